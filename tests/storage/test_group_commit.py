"""Group commit of deliveries (SMTP and IMAP APPEND share it), on SQLite and PostgreSQL.

Several deliveries written in one transaction must leave exactly the rows single deliveries
would: RFC 3501 2.3.1.1 (UIDs strictly ascending in each mailbox), RFC 7162 3.1 (each message
its own mod-sequence, above every earlier one, with a change-log row), the SEARCH index rows,
the flag rows, and the blob reference counts — and "250"/"OK" only after that commit.
"""

from __future__ import annotations

from sqlalchemy import func, select

from kantoor.storage.models import Blob, Change, Item, MessageFlags, MessageHeader, MessageText, SearchBacklog


def _rows(core, query):  # type: ignore[no-untyped-def]
    with core.store.read() as s:
        return s.execute(query).all()


def test_one_transaction_for_a_group_keeps_every_message_row_rfc3501_rfc7162(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    account = store.create_account("ann@example.org", "", "standard")
    inbox = store.mailbox(account.principal_id, "INBOX")
    archive = store.create_collection(account.principal_id, "mailbox", "Group test", actor=account.principal_id)
    big = b"Subject: big\r\nFrom: Zo\xc3\xab <zoe@example.org>\r\n\r\n" + b"x" * (store.inline_limit + 10)
    small = b"Subject: small\r\nTo: ann@example.org\r\n\r\nhello group"
    events = []
    store.notifier.subscribe(events.append)
    batch = [store._prepare_delivery([inbox.id], big, None, None, ["\\Seen"], None),
             store._prepare_delivery([inbox.id], big, None, None, (), None),  # the same blob twice in one group
             store._prepare_delivery([inbox.id, archive.id], small, None, None, ["$Label1"], None)]
    with store._writer_turn():
        store._delivery_group().commit(batch)
    assert [job.error for job in batch] == [None, None, None]
    delivered = [job.result for job in batch]
    assert [d[inbox.id].uid for d in delivered] == [1, 2, 3]
    assert delivered[2][archive.id].uid == 1
    items = {i.id: i for d in delivered for i in d.values()}
    assert len(items) == 4 and all(i.id is not None for i in items.values())

    # Each item as stored is what the caller got back (ids in the order of the group's messages).
    stored = {row.id: row for row in _rows(core, select(Item.id, Item.uid, Item.collection_id, Item.flags,
                                                           Item.modseq, Item.subject, Item.blob_sha256))}
    for item in items.values():
        row = stored[item.id]
        assert (row.uid, row.collection_id, row.flags, row.modseq, row.subject) == (
            item.uid, item.collection_id, item.flags, item.modseq, item.subject)
    assert stored[delivered[0][inbox.id].id].flags == "\\Seen"

    # Modseqs: one per message, ascending with the UIDs, each in the change log and in the flag row.
    inbox_modseqs = [d[inbox.id].modseq for d in delivered]
    assert inbox_modseqs == sorted(set(inbox_modseqs))
    changes = _rows(core, select(Change.collection_id, Change.modseq, Change.item_uid, Change.kind)
                    .where(Change.collection_id.in_([inbox.id, archive.id])).order_by(Change.id))
    assert [(c.collection_id, c.modseq, c.item_uid, c.kind) for c in changes] == (
        [(inbox.id, m, uid, "created") for m, uid in zip(inbox_modseqs, [1, 2, 3], strict=True)]
        + [(archive.id, delivered[2][archive.id].modseq, 1, "created")])
    flags = {r.item_id: (r.collection_id, r.uid, r.flags, r.modseq)
             for r in _rows(core, select(MessageFlags.item_id, MessageFlags.collection_id, MessageFlags.uid,
                                         MessageFlags.flags, MessageFlags.modseq))}
    assert flags == {i.id: (i.collection_id, i.uid, i.flags, i.modseq) for i in items.values()}
    fresh_inbox = store.mailbox(account.principal_id, "INBOX")
    assert (fresh_inbox.uidnext, fresh_inbox.modseq) == (4, inbox_modseqs[-1])

    # Every copy waits in the search backlog, then has its SEARCH rows; the blob counted once per referencing item.
    assert {r.item_id for r in _rows(core, select(SearchBacklog.item_id))} == set(items)
    assert store.index_search_backlog() == len(items)
    texts = dict(_rows(core, select(MessageText.item_id, MessageText.body)))
    assert set(texts) == set(items) and texts[delivered[2][archive.id].id] == "hello group"
    subjects = _rows(core, select(MessageHeader.item_id).where(MessageHeader.name == "subject"))
    assert {r.item_id for r in subjects} == set(items)
    sha = stored[delivered[0][inbox.id].id].blob_sha256
    assert sha is not None and sha == stored[delivered[1][inbox.id].id].blob_sha256
    assert _rows(core, select(Blob.refcount).where(Blob.sha256 == sha)) == [(2,)]
    assert store.usage(account.principal_id)["mail"] == 2 * len(big) + 2 * len(small)

    # After the commit, one event per mailbox naming its newest message (listeners read the change log).
    assert sorted((e.collection_id, e.kind, e.modseq, e.item_uid) for e in events) == sorted(
        [(inbox.id, "created", inbox_modseqs[-1], 3), (archive.id, "created", delivered[2][archive.id].modseq, 1)])


def test_a_failing_message_fails_alone_when_its_group_is_redone(core) -> None:  # type: ignore[no-untyped-def]
    """A message whose mailbox is gone fails on its own; the others of its group are delivered (the group
    is written again message by message) and no row of the failed one remains."""
    store = core.store
    account = store.create_account("ann@example.org", "", "standard")
    inbox = store.mailbox(account.principal_id, "INBOX")
    batch = [store._prepare_delivery([inbox.id], b"Subject: a\r\n\r\na", None, None, (), None),
             store._prepare_delivery([999_999], b"Subject: lost\r\n\r\nb", None, None, (), None),
             store._prepare_delivery([inbox.id], b"Subject: c\r\n\r\nc", None, None, (), None)]
    with store._writer_turn():
        store._delivery_group().commit(batch)
    assert batch[0].error is None and batch[2].error is None and batch[1].error is not None
    assert [batch[0].result[inbox.id].uid, batch[2].result[inbox.id].uid] == [1, 2]
    count = _rows(core, select(func.count()).select_from(Item).where(Item.collection_id == inbox.id))
    assert count == [(2,)]
    assert _rows(core, select(func.count()).select_from(SearchBacklog)) == [(2,)]


def test_raw_utf8_in_a_header_is_indexed_as_text_rfc6532(core) -> None:  # type: ignore[no-untyped-def]
    """RFC 6532 section 3.2: 8-bit header bytes are UTF-8. Such a message (SMTPUTF8 mail) is delivered, its
    header row holds the text (SEARCH FROM "zoë" can match), and bytes that are not UTF-8 do not stop it."""
    store = core.store
    account = store.create_account("ann@example.org", "", "standard")
    inbox = store.mailbox(account.principal_id, "INBOX")
    raw = "Subject: caf\u00e9\r\nFrom: Zo\u00eb <zoe@example.org>\r\n\r\nbody".encode()
    item = store.deliver_message(inbox.id, raw)
    broken = store.deliver_message(inbox.id, b"Subject: bad \xff byte\r\n\r\nbody")
    assert store.index_search_backlog() == 2
    rows = dict(_rows(core, select(MessageHeader.name, MessageHeader.value).where(MessageHeader.item_id == item.id)))
    assert rows == {"subject": "caf\u00e9", "from": "zo\u00eb <zoe@example.org>"}
    assert item.from_addr == "Zo\u00eb <zoe@example.org>"
    assert _rows(core, select(MessageHeader.value).where(MessageHeader.item_id == broken.id)) == [("bad \ufffd byte",)]
