"""Quota engine: capacities per plan, racing writers, group limits, feature gates."""

from __future__ import annotations

import threading
import time

import pytest

from kantoor.config import PlanSettings
from kantoor.storage import QuotaExceeded


def _tiny(settings) -> None:  # type: ignore[no-untyped-def]
    settings.plans["tiny"] = PlanSettings(title="Tiny", mail_bytes=100_000, documents_bytes=100_000,
                                          calendar_bytes=10_000, max_groups=1, max_members=2, imap=True)


@pytest.fixture
def tiny_core(open_test_core):  # type: ignore[no-untyped-def]
    """A core with a 'tiny' plan: 100 kB of mail and documents, one group of two members."""
    return open_test_core(_tiny)


def _root(core, account):  # type: ignore[no-untyped-def]
    return core.store.find_collection(account.principal_id, "folder", "", account.principal_id)


def test_write_over_capacity_is_refused_and_stores_nothing(tiny_core) -> None:  # type: ignore[no-untyped-def]
    account = tiny_core.store.create_account("t@example.org", "", "tiny")
    root = _root(tiny_core, account)
    tiny_core.store.put_item(root.id, "a", b"x" * 60_000, "application/octet-stream", actor=account.principal_id)
    with pytest.raises(QuotaExceeded) as info:
        tiny_core.store.put_item(root.id, "b", b"x" * 60_000, "application/octet-stream",
                                 actor=account.principal_id)
    assert info.value.tool == "documents" and info.value.capacity == 100_000
    assert [i.name for i in tiny_core.store.list_items(root.id, actor=account.principal_id)] == ["a"]
    assert tiny_core.store.usage(account.principal_id)["documents"] == 60_000
    # Replacing with a smaller body frees space; deleting gives it all back.
    tiny_core.store.put_item(root.id, "a", b"x" * 10, "application/octet-stream", actor=account.principal_id)
    assert tiny_core.store.usage(account.principal_id)["documents"] == 10
    tiny_core.store.delete_item(root.id, "a", actor=account.principal_id)
    assert tiny_core.store.usage(account.principal_id)["documents"] == 0


def test_two_racing_writers_cannot_exceed_capacity(tiny_core) -> None:  # type: ignore[no-untyped-def]
    account = tiny_core.store.create_account("race@example.org", "", "tiny")
    inbox = tiny_core.store.mailbox(account.principal_id, "INBOX")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def writer(n: int) -> None:
        barrier.wait()
        for _ in range(5):
            try:
                tiny_core.store.deliver_message(inbox.id, b"Subject: r\r\n\r\n" + b"m" * 15_000)
                outcomes.append("stored")
            except QuotaExceeded:
                outcomes.append("refused")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    used = tiny_core.store.usage(account.principal_id)["mail"]
    stored = len(tiny_core.store.list_messages(inbox.id))
    assert used <= 100_000
    assert stored == outcomes.count("stored") == 6  # 6 × 15 kB fit in 100 kB, the 7th does not
    assert used == sum(m.size for m in tiny_core.store.list_messages(inbox.id))


def test_group_capacity_comes_from_the_administrators_plan(tiny_core) -> None:  # type: ignore[no-untyped-def]
    admin = tiny_core.store.create_account("boss@example.org", "", "tiny")
    member = tiny_core.store.create_account("m@example.org", "", "professional")
    group = tiny_core.store.create_group("Crew", admin.login)
    tiny_core.store.add_member("Crew", member.login, can_write=True)
    drive = tiny_core.store.find_collection(group.principal_id, "folder", "", member.principal_id)
    tiny_core.store.put_item(drive.id, "a", b"x" * 90_000, "application/octet-stream", actor=member.principal_id)
    with pytest.raises(QuotaExceeded):
        tiny_core.store.put_item(drive.id, "b", b"x" * 20_000, "application/octet-stream",
                                 actor=member.principal_id)
    assert tiny_core.store.usage(group.principal_id)["documents"] == 90_000
    assert tiny_core.store.usage(member.principal_id)["documents"] == 0


def test_plan_caps_groups_and_members(tiny_core) -> None:  # type: ignore[no-untyped-def]
    admin = tiny_core.store.create_account("cap@example.org", "", "tiny")
    for login in ("a@example.org", "b@example.org"):
        tiny_core.store.create_account(login, "", "free")
    tiny_core.store.create_group("One", admin.login)
    with pytest.raises(QuotaExceeded):
        tiny_core.store.create_group("Two", admin.login)
    tiny_core.store.add_member("One", "a@example.org")  # admin + a = 2 members
    with pytest.raises(QuotaExceeded):
        tiny_core.store.add_member("One", "b@example.org")


def test_feature_gates_follow_the_plan(tiny_core) -> None:  # type: ignore[no-untyped-def]
    free = tiny_core.store.create_account("f@example.org", "", "free")
    paid = tiny_core.store.create_account("p@example.org", "", "standard")
    assert not tiny_core.quota.allows(free, "imap") and not tiny_core.quota.allows(free, "webdav")
    assert tiny_core.quota.allows(free, "caldav")
    assert all(tiny_core.quota.allows(paid, f) for f in ("imap", "smtp", "webdav", "caldav"))
    # Moving to a higher plan raises the limits at once.
    tiny_core.store.update_account(free.login, plan="standard")
    assert tiny_core.quota.allows(tiny_core.store.get_account(free.login), "imap")


def test_a_plan_change_by_another_process_counts_from_the_next_write(tiny_core, open_test_core) -> None:  # type: ignore[no-untyped-def]
    """reserve() reads the capacity in its own UPDATE: nothing cached survives a plan change."""
    account = tiny_core.store.create_account("grow@example.org", "", "tiny")
    root = _root(tiny_core, account)
    tiny_core.store.put_item(root.id, "a", b"x" * 90_000, "application/octet-stream", actor=account.principal_id)
    with pytest.raises(QuotaExceeded):
        tiny_core.store.put_item(root.id, "b", b"x" * 20_000, "application/octet-stream",
                                 actor=account.principal_id)
    # A second core on the same database: another `kantoor` process, changing the plan.
    other = open_test_core(_tiny)
    other.store.update_account(account.login, plan="standard")
    tiny_core.store.put_item(root.id, "b", b"x" * 20_000, "application/octet-stream", actor=account.principal_id)
    other.store.update_account(account.login, plan="tiny")
    with pytest.raises(QuotaExceeded) as info:
        tiny_core.store.put_item(root.id, "c", b"x", "application/octet-stream", actor=account.principal_id)
    assert (info.value.used, info.value.capacity, info.value.requested) == (110_000, 100_000, 1)
    # Shrinking is always allowed, also over the capacity.
    tiny_core.store.delete_item(root.id, "b", actor=account.principal_id)
    assert tiny_core.store.usage(account.principal_id)["documents"] == 90_000


def test_a_group_follows_its_administrators_plan_change(tiny_core) -> None:  # type: ignore[no-untyped-def]
    admin = tiny_core.store.create_account("lead@example.org", "", "tiny")
    group = tiny_core.store.create_group("Band", admin.login)
    drive = tiny_core.store.find_collection(group.principal_id, "folder", "", admin.principal_id)
    with pytest.raises(QuotaExceeded):
        tiny_core.store.put_item(drive.id, "big", b"x" * 150_000, "application/octet-stream",
                                 actor=admin.principal_id)
    tiny_core.store.update_account(admin.login, plan="standard")
    tiny_core.store.put_item(drive.id, "big", b"x" * 150_000, "application/octet-stream", actor=admin.principal_id)
    assert tiny_core.store.usage(group.principal_id)["documents"] == 150_000


def test_reserving_for_an_owner_that_does_not_exist_fails_loudly(tiny_core) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LookupError), tiny_core.store.write() as s:
        tiny_core.quota.reserve(s, 999_999, "documents", 1)


def test_a_reservation_is_undone_with_the_write_that_made_it(tiny_core) -> None:  # type: ignore[no-untyped-def]
    """reserve() runs on the write transaction's own connection: a rollback takes the reservation back, the
    capacity is the exact limit, and shrinking stops at zero."""
    account = tiny_core.store.create_account("undo@example.org", "", "tiny")
    owner = account.principal_id
    with pytest.raises(RuntimeError), tiny_core.store.write() as s:
        tiny_core.quota.reserve(s, owner, "mail", 60_000)
        raise RuntimeError("the write fails after its reservation")
    assert tiny_core.store.usage(owner).get("mail", 0) == 0
    with tiny_core.store.write() as s:
        tiny_core.quota.reserve(s, owner, "mail", 100_000)  # exactly the capacity
    with pytest.raises(QuotaExceeded) as info, tiny_core.store.write() as s:
        tiny_core.quota.reserve(s, owner, "mail", 1)
    assert (info.value.used, info.value.capacity) == (100_000, 100_000)
    assert tiny_core.store.usage(owner)["mail"] == 100_000
    with tiny_core.store.write() as s:
        tiny_core.quota.reserve(s, owner, "mail", -250_000)
    assert tiny_core.store.usage(owner)["mail"] == 0


def _message(size: int) -> bytes:
    return b"From: postmaster@example.org\r\nSubject: notice\r\n\r\n" + b"y" * size + b"\r\n"


def test_the_servers_own_notice_reaches_a_full_mailbox_and_is_counted(tiny_core) -> None:  # type: ignore[no-untyped-def]
    """deliver_message(over_capacity=True) (the queue's short null-sender mail) stores into a full mailbox and
    counts the bytes; everything else into that mailbox is still refused."""
    store = tiny_core.store
    account = store.create_account("full@example.org", "", "tiny")
    inbox = store.mailbox(account.principal_id, "INBOX")
    store.deliver_message(inbox.id, _message(95_000))
    used = store.usage(account.principal_id)["mail"]
    with pytest.raises(QuotaExceeded):
        store.deliver_message(inbox.id, _message(10_000))
    notice = _message(10_000)
    store.deliver_message(inbox.id, notice, over_capacity=True)
    assert store.usage(account.principal_id)["mail"] == used + len(notice) > 100_000
    with pytest.raises(QuotaExceeded):
        store.deliver_message(inbox.id, _message(10))
    assert len(store.list_items(inbox.id)) == 2


def test_a_notice_and_a_refused_delivery_in_one_group_each_get_their_own_answer(tiny_core) -> None:  # type: ignore[no-untyped-def]
    """The group commit reserves a notice on its own: a message that does not fit, written in the same group,
    is refused alone and the notice is still stored."""
    store = tiny_core.store
    account = store.create_account("group@example.org", "", "tiny")
    inbox = store.mailbox(account.principal_id, "INBOX")
    store.deliver_message(inbox.id, _message(95_000))
    group = store._delivery_group()
    outcomes: dict[str, object] = {}

    def deliver(name: str, over_capacity: bool) -> None:
        try:
            outcomes[name] = store.deliver_message(inbox.id, _message(8_000), over_capacity=over_capacity)
        except QuotaExceeded as exc:
            outcomes[name] = exc

    with group.leader:  # hold the turn so both wait for one group
        threads = [threading.Thread(target=deliver, args=(name, name == "notice")) for name in ("notice", "other")]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while group.waiting < 2:
            assert time.monotonic() < deadline, f"only {group.waiting} of 2 deliveries reached the group: {outcomes}"
            threading.Event().wait(0.01)
    for thread in threads:
        thread.join(30)
    assert isinstance(outcomes["other"], QuotaExceeded)
    assert not isinstance(outcomes["notice"], BaseException)
    assert len(store.list_items(inbox.id)) == 2
