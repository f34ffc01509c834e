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
