"""ARCHITECTURE invariant 1 (one write path) and the blob store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from kantoor.storage import NotFound, PermissionDenied, PreconditionFailed
from kantoor.storage.models import Blob, Change, Item


class InjectedFailure(RuntimeError):
    pass


def _account(core, login="ann@example.org", plan="standard"):  # type: ignore[no-untyped-def]
    return core.store.create_account(login, "", plan)


def _root(core, account):  # type: ignore[no-untyped-def]
    return core.store.find_collection(account.principal_id, "folder", "", account.principal_id)


def _count(core, query) -> int:  # type: ignore[no-untyped-def]
    with core.store.read() as s:
        return int(s.scalar(query) or 0)


@pytest.mark.parametrize("stage", ["after_blob_write", "before_commit"])
def test_failed_write_leaves_no_row_no_usage_and_no_blob_after_gc(core, stage: str) -> None:  # type: ignore[no-untyped-def]
    account = _account(core)
    root = _root(core, account)
    body = b"large body " * 10_000  # over the inline limit: goes to a blob file

    def fail(where: str) -> None:
        if where == stage:
            raise InjectedFailure(where)

    core.store.fault_hook = fail
    with pytest.raises(InjectedFailure):
        core.store.put_item(root.id, "doc.txt", body, "text/plain", actor=account.principal_id)
    core.store.fault_hook = None

    with pytest.raises(NotFound):
        core.store.get_item(root.id, "doc.txt", actor=account.principal_id)
    assert core.store.usage(account.principal_id)["documents"] == 0
    assert _count(core, select(func.count()).select_from(Change).where(Change.collection_id == root.id)) == 0
    assert list(core.store.blobs.all_files()), "the blob file was written before the failure"
    core.store.collect_garbage(grace_seconds=0)
    assert list(core.store.blobs.all_files()) == []


def test_failed_message_delivery_keeps_uidnext_and_usage(core) -> None:  # type: ignore[no-untyped-def]
    account = _account(core)
    inbox = core.store.mailbox(account.principal_id, "INBOX")
    core.store.fault_hook = lambda where: (_ for _ in ()).throw(InjectedFailure(where))
    with pytest.raises(InjectedFailure):
        core.store.deliver_message(inbox.id, b"Subject: x\r\n\r\n" + b"y" * 50_000)
    core.store.fault_hook = None
    assert core.store.get_collection(inbox.id).uidnext == 1
    assert core.store.usage(account.principal_id)["mail"] == 0
    message = core.store.deliver_message(inbox.id, b"Subject: x\r\n\r\nhello\r\n")
    assert message.uid == 1


def test_blob_reference_counting_and_gc(core) -> None:  # type: ignore[no-untyped-def]
    account = _account(core)
    root = _root(core, account)
    body = b"z" * 100_000
    a, _ = core.store.put_item(root.id, "a.bin", body, "application/octet-stream", actor=account.principal_id)
    b, _ = core.store.put_item(root.id, "b.bin", body, "application/octet-stream", actor=account.principal_id)
    assert a.blob_sha256 == b.blob_sha256  # content-addressed: stored once
    assert _count(core, select(Blob.refcount).where(Blob.sha256 == a.blob_sha256)) == 2
    core.store.delete_item(root.id, "a.bin", actor=account.principal_id)
    assert core.store.collect_garbage(grace_seconds=0) == 0  # still referenced by b.bin
    assert core.store.read_body(core.store.get_item(root.id, "b.bin", actor=account.principal_id)) == body
    core.store.delete_item(root.id, "b.bin", actor=account.principal_id)
    assert core.store.collect_garbage(grace_seconds=0) == 1
    assert list(core.store.blobs.all_files()) == []
    assert core.store.usage(account.principal_id)["documents"] == 0


def test_gc_spares_young_unreferenced_files(core) -> None:  # type: ignore[no-untyped-def]
    stored = core.store.blobs.write(b"in flight" * 5000)
    assert core.store.collect_garbage(grace_seconds=3600) == 0
    assert core.store.blobs.exists(stored.sha256)


def test_streamed_body_is_stored_in_chunks(core) -> None:  # type: ignore[no-untyped-def]
    account = _account(core)
    root = _root(core, account)
    chunks = (bytes([i % 251]) * 65536 for i in range(40))  # 2.5 MiB from an iterator
    item, created = core.store.put_item(root.id, "big.bin", chunks, "application/octet-stream",
                                        actor=account.principal_id)
    assert created and item.size == 40 * 65536
    with core.store.open_body(item) as fh:
        assert fh.read(65536) == bytes([0]) * 65536


def test_etag_preconditions(core) -> None:  # type: ignore[no-untyped-def]
    account = _account(core)
    root = _root(core, account)
    item, _ = core.store.put_item(root.id, "n.txt", b"one", "text/plain", actor=account.principal_id)
    with pytest.raises(PreconditionFailed):
        core.store.put_item(root.id, "n.txt", b"two", "text/plain", actor=account.principal_id, if_none_match=True)
    with pytest.raises(PreconditionFailed):
        core.store.put_item(root.id, "n.txt", b"two", "text/plain", actor=account.principal_id, if_match='"nope"')
    updated, created = core.store.put_item(root.id, "n.txt", b"two", "text/plain",
                                           actor=account.principal_id, if_match=item.etag)
    assert not created and updated.etag != item.etag


def test_change_log_and_modseq(core) -> None:  # type: ignore[no-untyped-def]
    account = _account(core)
    cal = core.store.find_collection(account.principal_id, "calendar", "calendar", account.principal_id)
    start = cal.modseq
    core.store.put_item(cal.id, "e.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar",
                        actor=account.principal_id)
    core.store.put_item(cal.id, "e.ics", b"BEGIN:VCALENDAR\r\nX:1\r\nEND:VCALENDAR\r\n", "text/calendar",
                        actor=account.principal_id)
    core.store.delete_item(cal.id, "e.ics", actor=account.principal_id)
    changes = core.store.changes_since(cal.id, start, actor=account.principal_id)
    assert [(c.item_name, c.kind) for c in changes] == [("e.ics", "created"), ("e.ics", "modified"),
                                                        ("e.ics", "deleted")]
    assert [c.modseq for c in changes] == [start + 1, start + 2, start + 3]
    assert core.store.get_collection(cal.id).modseq == start + 3


def test_after_commit_notification_only_for_committed_writes(core) -> None:  # type: ignore[no-untyped-def]
    account = _account(core)
    inbox = core.store.mailbox(account.principal_id, "INBOX")
    seen = []
    core.store.notifier.subscribe(seen.append)
    core.store.fault_hook = lambda where: (_ for _ in ()).throw(InjectedFailure(where))
    with pytest.raises(InjectedFailure):
        core.store.deliver_message(inbox.id, b"Subject: lost\r\n\r\n.")
    core.store.fault_hook = None
    assert seen == []
    message = core.store.deliver_message(inbox.id, b"Subject: kept\r\n\r\n.")
    assert [(e.collection_id, e.kind, e.item_uid) for e in seen] == [(inbox.id, "created", message.uid)]


def _in_four_threads(work) -> None:  # type: ignore[no-untyped-def]
    """``work(n)`` for n = 0..3 at once, each in a thread of its own; returns when all are done."""
    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def test_concurrent_deliveries_get_distinct_increasing_uids(core) -> None:  # type: ignore[no-untyped-def]
    account = _account(core)
    inbox = core.store.mailbox(account.principal_id, "INBOX")
    uids: list[int] = []
    lock = threading.Lock()

    def deliver(n: int) -> None:
        for i in range(10):
            item = core.store.deliver_message(inbox.id, f"Subject: {n}-{i}\r\n\r\nbody".encode())
            with lock:
                uids.append(item.uid)

    _in_four_threads(deliver)
    assert sorted(uids) == list(range(1, 41))
    assert _count(core, select(func.count()).select_from(Item).where(Item.collection_id == inbox.id)) == 40


def test_append_message_looks_its_mailbox_up_in_the_write_transaction(core) -> None:  # type: ignore[no-untyped-def]
    """IMAP APPEND's delivery by mailbox name: INBOX in any case, NotFound / PermissionDenied storing nothing,
    and UIDs shared correctly with deliveries by id that are group-committed with it."""
    account = _account(core)
    other = _account(core, "bob@example.org")
    inbox = core.store.mailbox(account.principal_id, "INBOX")
    coll, item = core.store.append_message(account.principal_id, "inbox", b"Subject: a\r\n\r\nbody",
                                           actor=account.principal_id, flags=["\\Seen"])
    assert (coll.id, coll.uidvalidity, item.uid, item.collection_id) == (inbox.id, inbox.uidvalidity, 1, inbox.id)
    usage = core.store.usage(account.principal_id)["mail"]
    with pytest.raises(NotFound):
        core.store.append_message(account.principal_id, "Nowhere", b"Subject: b\r\n\r\nbody",
                                  actor=account.principal_id)
    with pytest.raises(PermissionDenied):  # no read right on someone else's INBOX
        core.store.append_message(account.principal_id, "INBOX", b"Subject: c\r\n\r\nbody", actor=other.principal_id)
    assert core.store.usage(account.principal_id)["mail"] == usage
    assert core.store.mailbox(account.principal_id, "INBOX").uidnext == 2
    uids: list[int] = []
    lock = threading.Lock()

    def deliver(n: int) -> None:
        for i in range(10):
            raw = f"Subject: {n}-{i}\r\n\r\nbody".encode()
            if n % 2:
                item = core.store.append_message(account.principal_id, "INBOX", raw, actor=account.principal_id)[1]
            else:
                item = core.store.deliver_message(inbox.id, raw)
            with lock:
                uids.append(item.uid)

    _in_four_threads(deliver)
    assert sorted(uids) == list(range(2, 42))
    assert [m.uid for m in core.store.list_messages(inbox.id)] == list(range(1, 42))
