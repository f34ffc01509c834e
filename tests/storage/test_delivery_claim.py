"""A delivery takes its UID and mod-sequence with one ``UPDATE … RETURNING`` of the mailbox and writes its rows
with statements compiled once per dialect (kantoor.storage.raw_statements), on SQLite and PostgreSQL.

RFC 3501 2.3.1.1 (UIDs strictly ascending, UIDNEXT above every UID given), RFC 4315 (APPENDUID names the
mailbox's UIDVALIDITY and the new UID), RFC 7162 3.1 (each message its own mod-sequence): what was stored
must be what the ORM reads back, and a refused delivery must take nothing.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from kantoor.storage import NotFound, PermissionDenied
from kantoor.storage.models import Collection, Item, MessageFlags, MessageHeader, MessageText, SearchBacklog

MESSAGE = (b"From: Zo\xc3\xab <zoe@example.org>\r\nTo: ann@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
           b"Date: Thu, 26 Nov 2026 10:00:00 +0100\r\nMessage-ID: <claim@example.org>\r\n\r\nHello  claim\r\n")


def _mailbox(core, mailbox_id: int) -> Collection:  # type: ignore[no-untyped-def]
    with core.store.read() as s:
        coll = s.get(Collection, mailbox_id)
        assert coll is not None
        return coll


def test_append_takes_the_next_uid_and_modseq_and_returns_the_mailbox_as_committed_rfc3501_rfc4315(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner = store.create_account("ann@example.org", "", "standard").principal_id
    box = store.create_collection(owner, "mailbox", "Claims", actor=owner)
    before = _mailbox(core, box.id)
    results = [store.append_message(owner, "Claims", MESSAGE, actor=owner, flags=["\\Seen"] if n else [])
               for n in range(3)]
    assert [item.uid for _coll, item in results] == [1, 2, 3]
    modseqs = [item.modseq for _coll, item in results]
    assert modseqs == sorted(set(modseqs)) and modseqs[0] > before.modseq
    coll, last = results[-1]
    stored = _mailbox(core, box.id)
    # The mailbox handed back is the row as committed: APPENDUID's UIDVALIDITY, UIDNEXT past the last UID.
    assert (coll.id, coll.uidvalidity, coll.uidnext, coll.modseq) == (
        box.id, stored.uidvalidity, 4, last.modseq) == (stored.id, stored.uidvalidity, stored.uidnext, stored.modseq)
    assert coll.updated_at == stored.updated_at and coll.updated_at.tzinfo is not None
    assert (coll.owner_id, coll.kind, coll.path, coll.created_at) == (
        stored.owner_id, stored.kind, stored.path, stored.created_at)


def test_rows_written_by_the_compiled_statements_read_back_through_the_orm(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner = store.create_account("ann@example.org", "", "standard").principal_id
    when = dt.datetime(2026, 11, 26, 9, 30, 15, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    coll, item = store.append_message(owner, "INBOX", MESSAGE, actor=owner, flags=["\\Seen", "$Label1"],
                                      internaldate=when)
    with store.read() as s:
        row = s.get(Item, item.id)
        assert row is not None
        assert row.internaldate == when and row.internaldate.tzinfo is not None
        assert row.created_at == item.created_at and row.created_at.tzinfo is not None
        assert row.inline_body == MESSAGE and row.size == len(MESSAGE)
        assert row.recurring is False and row.sent_date == dt.date(2026, 11, 26)
        assert (row.subject, row.message_id, row.uid, row.name) == ("Grüße", "<claim@example.org>", 1, "1")
        assert row.imap_envelope == item.imap_envelope and row.imap_envelope.startswith('("Thu, 26 Nov 2026')
        flags = s.execute(select(MessageFlags.collection_id, MessageFlags.uid, MessageFlags.flags,
                                 MessageFlags.modseq).where(MessageFlags.item_id == item.id)).one()
        assert tuple(flags) == (coll.id, 1, "\\Seen $Label1", item.modseq)
        # The SEARCH rows are the search backlog's to write (kantoor.storage.search_backlog).
        assert s.scalars(select(SearchBacklog.item_id)).all() == [item.id]
        assert s.scalar(select(MessageText.body).where(MessageText.item_id == item.id)) is None
    assert store.index_search_backlog() == 1
    with store.read() as s:
        assert s.scalars(select(SearchBacklog.item_id)).all() == []
        headers = dict(s.execute(select(MessageHeader.name, MessageHeader.value)
                                 .where(MessageHeader.item_id == item.id)).all())
        assert headers["subject"] == "grüße" and headers["from"] == "zoë <zoe@example.org>"
        assert s.scalar(select(MessageText.body).where(MessageText.item_id == item.id)) == "hello claim "


def test_a_refused_append_takes_no_uid_rfc3501_2_3_1_1(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner = store.create_account("ann@example.org", "", "standard").principal_id
    stranger = store.create_account("bob@example.org", "", "standard").principal_id
    store.create_collection(owner, "mailbox", "Private", actor=owner)
    before = store.mailbox(owner, "Private")
    with pytest.raises(PermissionDenied):
        store.append_message(owner, "Private", MESSAGE, actor=stranger)
    after = _mailbox(core, before.id)
    assert (after.uidnext, after.modseq) == (before.uidnext, before.modseq)
    with pytest.raises(NotFound):
        store.append_message(owner, "No such box", MESSAGE, actor=owner)
    _coll, item = store.append_message(owner, "Private", MESSAGE, actor=owner)
    assert item.uid == 1


def test_delivery_to_a_collection_that_is_no_mailbox_is_refused_and_takes_nothing(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner = store.create_account("ann@example.org", "", "standard").principal_id
    calendar = store.create_collection(owner, "calendar", "Work", actor=owner)
    before = _mailbox(core, calendar.id)
    with pytest.raises(NotFound):
        store.deliver_message(calendar.id, MESSAGE, actor=owner)
    with pytest.raises(NotFound):
        store.deliver_message(10**9, MESSAGE, actor=owner)
    after = _mailbox(core, calendar.id)
    assert (after.uidnext, after.modseq, after.updated_at) == (before.uidnext, before.modseq, before.updated_at)
