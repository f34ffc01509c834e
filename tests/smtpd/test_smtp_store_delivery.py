"""Store.deliver_message_to_mailboxes (added for SMTP): one message, many INBOXes, all or nothing."""

from __future__ import annotations

import pytest

from kantoor.storage import QuotaExceeded
from kantoor.storage.models import Blob


def _inbox(core, login: str):  # type: ignore[no-untyped-def]
    account = core.store.get_account(login)
    return account, core.store.mailbox(account.principal_id, "INBOX")


@pytest.mark.parametrize("size", [200, 100_000], ids=["inline", "blob"])
def test_every_mailbox_gets_the_message_with_its_own_uid_and_usage(core, size: int) -> None:  # type: ignore[no-untyped-def]
    for login in ("ann@example.org", "bob@example.org"):
        core.store.create_account(login, "", "standard")
    (ann, ann_inbox), (bob, bob_inbox) = _inbox(core, "ann@example.org"), _inbox(core, "bob@example.org")
    core.store.deliver_message(bob_inbox.id, b"Subject: earlier\r\n\r\nx\r\n")
    raw = b"Subject: both\r\n\r\n" + b"y" * size + b"\r\n"

    items = core.store.deliver_message_to_mailboxes([ann_inbox.id, bob_inbox.id], raw)

    assert (items[ann_inbox.id].uid, items[bob_inbox.id].uid) == (1, 2)
    for owner, inbox in ((ann, ann_inbox), (bob, bob_inbox)):
        [message] = [m for m in core.store.list_messages(inbox.id) if m.subject == "both"]
        assert core.store.read_body(message) == raw
        assert core.store.usage(owner.principal_id)["mail"] >= len(raw)
    if items[ann_inbox.id].blob_sha256:
        with core.store.read() as s:
            assert s.get(Blob, items[ann_inbox.id].blob_sha256).refcount == 2


def test_a_full_mailbox_means_no_mailbox_gets_it(open_test_core) -> None:  # type: ignore[no-untyped-def]
    from kantoor.config import PlanSettings

    core = open_test_core(lambda settings: settings.plans.__setitem__(
        "tiny", PlanSettings(title="Tiny", mail_bytes=100, imap=True, smtp=True)))
    core.store.create_account("ann@example.org", "", "standard")
    core.store.create_account("tim@example.org", "", "tiny")
    (ann, ann_inbox), (tim, tim_inbox) = _inbox(core, "ann@example.org"), _inbox(core, "tim@example.org")

    with pytest.raises(QuotaExceeded):
        core.store.deliver_message_to_mailboxes([ann_inbox.id, tim_inbox.id], b"Subject: x\r\n\r\n" + b"z" * 500)

    assert core.store.list_messages(ann_inbox.id) == []
    assert core.store.usage(ann.principal_id)["mail"] == 0
    assert core.store.usage(tim.principal_id)["mail"] == 0
    assert core.store.get_collection(ann_inbox.id).uidnext == 1


WAIT = 30  # seconds: an upper bound for every wait, never a timing assertion


def _deliver_concurrently(core, jobs, hold_first: bool = True):  # type: ignore[no-untyped-def]
    """Run ``deliver_message_to_mailboxes(ids, raw)`` for every (ids, raw) in its own thread; the first one is
    held inside its transaction until all others wait, so they form one group. Outcome (items or the
    exception) per job, and the size of every group committed."""
    import threading
    import time

    store = core.store
    groups: list[int] = []
    group = store._delivery_group()
    commit = group.commit

    def recording(batch):  # type: ignore[no-untyped-def]
        groups.append(len(batch))
        commit(batch)

    group.commit = recording  # type: ignore[method-assign]
    held = threading.Event()

    def hold(stage: str) -> None:
        if stage == "before_commit" and hold_first and not held.is_set():
            held.set()
            deadline = time.monotonic() + WAIT
            while group.waiting < len(jobs) - 1 and time.monotonic() < deadline:
                time.sleep(0.01)

    store.fault_hook = hold
    outcomes: list[object] = [None] * len(jobs)

    def run(n: int) -> None:
        try:
            outcomes[n] = store.deliver_message_to_mailboxes(*jobs[n])
        except Exception as exc:  # noqa: BLE001 - compared by the test
            outcomes[n] = exc

    try:
        first = threading.Thread(target=run, args=(0,))
        first.start()
        assert held.wait(WAIT)
        others = [threading.Thread(target=run, args=(n,)) for n in range(1, len(jobs))]
        for thread in others:
            thread.start()
        for thread in [first, *others]:
            thread.join(WAIT)
            assert not thread.is_alive()
    finally:
        store.fault_hook = None
        del group.commit
    return outcomes, groups


def test_concurrent_deliveries_share_one_commit_and_each_caller_gets_its_own_items(core) -> None:  # type: ignore[no-untyped-def]
    for login in ("ann@example.org", "bob@example.org"):
        core.store.create_account(login, "", "standard")
    (ann, ann_inbox), (bob, bob_inbox) = _inbox(core, "ann@example.org"), _inbox(core, "bob@example.org")
    jobs = [([ann_inbox.id] if n % 3 else [ann_inbox.id, bob_inbox.id],
             f"Subject: m{n}\r\n\r\n".encode() + b"x" * (100_000 if n % 4 == 0 else 300) + b"\r\n")
            for n in range(9)]

    outcomes, groups = _deliver_concurrently(core, jobs)

    assert groups[0] == 1 and max(groups) == len(jobs) - 1, groups  # the eight that waited: one transaction
    for (ids, raw), items in zip(jobs, outcomes, strict=True):
        assert isinstance(items, dict) and set(items) == set(ids), items
        for mailbox_id, item in items.items():
            subject = raw.split(b"\r\n", 1)[0][len(b"Subject: "):].decode()
            [stored] = [m for m in core.store.list_messages(mailbox_id) if m.subject == subject]
            assert (stored.id, stored.uid) == (item.id, item.uid)
            assert core.store.read_body(stored) == raw
    for inbox, owner in ((ann_inbox, ann), (bob_inbox, bob)):
        messages = core.store.list_messages(inbox.id)
        assert [m.uid for m in messages] == list(range(1, len(messages) + 1))
        assert core.store.get_collection(inbox.id).uidnext == len(messages) + 1
        assert core.store.usage(owner.principal_id)["mail"] == sum(m.size for m in messages)
    assert len(core.store.list_messages(ann_inbox.id)) == len(jobs)


def test_one_full_mailbox_in_a_group_fails_only_its_own_delivery(open_test_core) -> None:  # type: ignore[no-untyped-def]
    from kantoor.config import PlanSettings

    core = open_test_core(lambda settings: settings.plans.__setitem__(
        "tiny", PlanSettings(title="Tiny", mail_bytes=100, imap=True, smtp=True)))
    core.store.create_account("ann@example.org", "", "standard")
    core.store.create_account("tim@example.org", "", "tiny")
    (ann, ann_inbox), (tim, tim_inbox) = _inbox(core, "ann@example.org"), _inbox(core, "tim@example.org")
    big = b"Subject: big\r\n\r\n" + b"z" * 500
    jobs = [([ann_inbox.id], b"Subject: a0\r\n\r\nx\r\n"), ([ann_inbox.id], b"Subject: a1\r\n\r\nx\r\n"),
            ([ann_inbox.id, tim_inbox.id], big), ([ann_inbox.id], b"Subject: a3\r\n\r\nx\r\n"),
            ([tim_inbox.id], big), ([ann_inbox.id], b"Subject: a5\r\n\r\nx\r\n")]

    outcomes, groups = _deliver_concurrently(core, jobs)

    assert max(groups) > 1, groups
    assert [type(o).__name__ for o in outcomes] == ["dict", "dict", "QuotaExceeded", "dict", "QuotaExceeded", "dict"]
    assert sorted(m.subject for m in core.store.list_messages(ann_inbox.id)) == ["a0", "a1", "a3", "a5"]
    assert [m.uid for m in core.store.list_messages(ann_inbox.id)] == [1, 2, 3, 4]
    assert core.store.list_messages(tim_inbox.id) == []
    assert core.store.usage(tim.principal_id)["mail"] == 0
    assert core.store.usage(ann.principal_id)["mail"] == sum(m.size for m in core.store.list_messages(ann_inbox.id))
