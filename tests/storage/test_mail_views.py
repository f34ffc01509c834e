"""The Store's IMAP views (kantoor.storage.mail) on SQLite and PostgreSQL: the message index computed once at
delivery (RFC 3501 7.4.2 ENVELOPE/BODYSTRUCTURE), SEARCH in SQL (RFC 3501 6.4.4), \\Recent claimed once
(RFC 3501 2.3.2), per-user flags in shared mailboxes, and query counts that do not grow with the mailbox."""

from __future__ import annotations

import base64
import threading

import pytest
from sqlalchemy import delete, event, select, update

from kantoor.storage import PermissionDenied
from kantoor.storage import mail_search as q
from kantoor.storage.models import Item, MessageHeader, MessageText

TEXT = "Grüße aus Köln, the quarterly numbers"
BIG = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <jurgen@example.org>\r\nTo: team@example.org\r\nCc: Boss <boss@example.org>\r\n"
    b"Subject: Report\r\nX-Tracking: abc-123\r\nDate: Tue, 02 Jan 2024 23:30:00 -0500\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"XyZ\"\r\n\r\n"
    b"--XyZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(TEXT.encode()) +
    b"--XyZ\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
    b"Content-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(b"\x00secret-in-attachment" * 3600) + b"--XyZ--\r\n"
)
SMALL = b"From: Ann <ann@example.net>\r\nSubject: Lunch\r\n\r\nsee you at noon\r\n"


def _account(core, login="ann@example.org"):  # type: ignore[no-untyped-def]
    account = core.store.create_account(login, "", "standard")
    return account.principal_id, core.store.mailbox(account.principal_id, "INBOX", account.principal_id)


def test_envelope_and_bodystructure_are_stored_at_delivery_and_fetched_without_the_body_rfc3501_7_4_2(core):  # type: ignore[no-untyped-def]
    me, inbox = _account(core)
    item = core.store.deliver_message(inbox.id, BIG, actor=me)
    assert item.blob_sha256 is not None  # large enough for a blob file
    core.store.blobs.path(item.blob_sha256).unlink()  # FETCH of metadata must not need it
    [row] = core.store.message_rows(inbox.id, [item.uid], me, cached=True)
    assert row.envelope.startswith('("Tue, 02 Jan 2024 23:30:00 -0500" "Report" ((')
    assert '"boss" "example.org"' in row.envelope
    assert row.bodystructure.startswith('(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "BASE64"')
    assert '"MIXED" ("BOUNDARY" "XyZ")' in row.bodystructure and '("ATTACHMENT" ("FILENAME" "data.bin"))' in \
        row.bodystructure
    assert row.body.endswith('"MIXED")') and row.size == len(BIG)


def test_copy_reuses_the_stored_index_and_never_recomputes_it_rfc3501_6_4_7(core, monkeypatch):  # type: ignore[no-untyped-def]
    me, inbox = _account(core)
    archive = core.store.mailbox(me, "Archive", me)
    core.store.deliver_message(inbox.id, BIG, actor=me)
    assert core.store.index_search_backlog() == 1  # what the server's indexer does once deliveries pause

    def fail(raw, search=True):  # type: ignore[no-untyped-def]
        raise AssertionError("the index was computed again")

    monkeypatch.setattr("kantoor.storage.mail.index_message_bytes", fail)  # delivery
    monkeypatch.setattr("kantoor.storage.mail_views.index_message_bytes", fail)  # the lazy path
    monkeypatch.setattr("kantoor.storage.search_backlog.search_fields", fail)  # the search backlog
    assert core.store.copy_messages(inbox.id, [1], archive.id, actor=me) == [(1, 1)]
    [original] = core.store.message_rows(inbox.id, [1], me, cached=True)
    [copy] = core.store.message_rows(archive.id, [1], me, cached=True)
    assert (copy.envelope, copy.bodystructure, copy.body) == (original.envelope, original.bodystructure, original.body)
    assert core.store.search_messages(archive.id, q.Text("köln", headers_too=False), me) == [(1, copy.modseq)]
    assert core.store.search_messages(archive.id, q.Header("x-tracking", "ABC"), me) == [(1, copy.modseq)]


def test_messages_stored_before_the_index_are_indexed_once_on_first_use(core, monkeypatch):  # type: ignore[no-untyped-def]
    me, inbox = _account(core)
    item = core.store.deliver_message(inbox.id, SMALL, actor=me)
    with core.store.write() as s:  # what a row written before migration 0004 looks like
        s.execute(update(Item).where(Item.id == item.id).values(imap_envelope=None, imap_bodystructure=None,
                                                                imap_body=None, sent_date=None))
        s.execute(delete(MessageHeader).where(MessageHeader.item_id == item.id))
        s.execute(delete(MessageText).where(MessageText.item_id == item.id))
    assert core.store.search_messages(inbox.id, q.Header("subject", "lunch"), me) == [(1, item.modseq)]
    monkeypatch.setattr("kantoor.storage.mail_views.index_message_bytes", lambda raw: 1 / 0)  # saved: not again
    monkeypatch.setattr("kantoor.storage.search_backlog.search_fields", lambda raw: 1 / 0)
    [row] = core.store.message_rows(inbox.id, [1], me, cached=True)
    assert '"Lunch"' in row.envelope
    assert core.store.search_messages(inbox.id, q.Text("noon", headers_too=True), me) == [(1, item.modseq)]


def test_search_runs_in_sql_on_decoded_headers_and_text_rfc3501_6_4_4(core):  # type: ignore[no-untyped-def]
    me, inbox = _account(core)
    core.store.deliver_message(inbox.id, BIG, actor=me, flags=["\\Seen", "$Work"])
    core.store.deliver_message(inbox.id, SMALL, actor=me)

    def uids(criterion):  # type: ignore[no-untyped-def]
        return [uid for uid, _ in core.store.search_messages(inbox.id, criterion, me)]

    assert uids(q.Text("GRÜßE AUS KÖLN", headers_too=False)) == [1]  # base64 + UTF-8 decoded
    assert uids(q.Text("secret-in-attachment", headers_too=False)) == []  # attachments are not text
    assert uids(q.Header("from", "JÜRGEN")) == [1]  # RFC 2047 decoded, case-folded
    assert uids(q.Header("cc", "boss")) == [1] and uids(q.Header("bcc", "")) == []
    assert uids(q.Header("x-tracking", "")) == [1]  # HEADER field "" matches any message with the field
    assert uids(q.Text("lunch", headers_too=True)) == [2] and uids(q.Text("lunch", headers_too=False)) == []
    assert uids(q.Text("50%", headers_too=True)) == []  # LIKE wildcards in the needle are literal
    assert uids(q.Sent("on", __import__("datetime").date(2024, 1, 2))) == [1]  # the sender's own day
    assert uids(q.Or(q.Flag("$work"), q.Size(False, 100))) == [1, 2]
    assert uids(q.And([q.Not(q.Flag("\\Seen")), q.Uids([(1, 5)])])) == [2]
    assert uids(q.Size(True, 10_000)) == [1]


def test_recent_is_claimed_by_one_session_across_processes_rfc3501_2_3_2(open_test_core):  # type: ignore[no-untyped-def]
    first, second = open_test_core(), open_test_core()  # two Stores on one database: two server processes
    me, inbox = _account(first)
    first.store.deliver_message(inbox.id, SMALL)
    first.store.deliver_message(inbox.id, SMALL)
    examined = second.store.open_mailbox(inbox.id, me, claim_recent=False)
    assert (examined.recent_from, examined.recent_to) == (0, 2)  # EXAMINE shows them and claims nothing
    selected = first.store.open_mailbox(inbox.id, me, claim_recent=True)
    assert (selected.recent_from, selected.recent_to) == (0, 2)
    again = second.store.open_mailbox(inbox.id, me, claim_recent=True)
    assert again.recent_to == again.recent_from  # nothing left for a later session
    second.store.deliver_message(inbox.id, SMALL)
    claimed: list[tuple[int, int]] = []

    def claim(core) -> None:  # type: ignore[no-untyped-def]
        delta = core.store.mailbox_changes(inbox.id, 0, 2, me, claim_recent=True)
        claimed.append((delta.recent_from, delta.recent_to))

    threads = [threading.Thread(target=claim, args=(c,)) for c in (first, second, first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    got = [(low, high) for low, high in claimed if high > low]
    assert len(claimed) == 4 and got == [(2, 3)]  # exactly one session got UID 3
    assert first.store.mailbox_status(inbox.id, me)["RECENT"] == 0


def test_flags_are_per_user_in_a_group_mailbox(core):  # type: ignore[no-untyped-def]
    admin_id, _ = _account(core, "boss@example.org")
    ann, _ = _account(core, "ann@example.org")
    group = core.store.create_group("Office", "boss@example.org")
    core.store.add_member("Office", "ann@example.org")
    shared = core.store.mailbox(group.principal_id, "INBOX", admin_id)
    core.store.deliver_message(shared.id, SMALL, actor=admin_id, flags=["\\Seen", "$Team"])
    [boss_view] = core.store.message_rows(shared.id, [1], admin_id)
    [ann_view] = core.store.message_rows(shared.id, [1], ann)
    assert boss_view.flags == ["\\Seen", "$Team"] and ann_view.flags == ["$Team"]
    # Ann may keep her own \Seen with read access (RFC 4314 "s"), not other flags.
    ann_seen = core.store.store_flags(shared.id, [1], ["\\Seen"], "add", actor=ann)
    with pytest.raises(PermissionDenied):
        core.store.store_flags(shared.id, [1], ["\\Flagged"], "add", actor=ann)
    [boss_after] = core.store.message_rows(shared.id, [1], admin_id)
    assert boss_after.modseq == boss_view.modseq  # Ann's \Seen is not the boss's change
    assert ann_seen.updated[1][1] > boss_view.modseq
    core.store.store_flags(shared.id, [1], ["\\Seen"], "remove", actor=admin_id)
    seen = q.Flag("\\Seen")
    assert [u for u, _ in core.store.search_messages(shared.id, seen, ann)] == [1]
    assert [u for u, _ in core.store.search_messages(shared.id, seen, admin_id)] == []
    assert core.store.mailbox_status(shared.id, ann)["UNSEEN"] == 0
    assert core.store.mailbox_status(shared.id, admin_id)["UNSEEN"] == 1
    assert core.store.usage(group.principal_id)["mail"] == len(SMALL)  # counts against the group


def _count_queries(core):  # type: ignore[no-untyped-def]
    counter = {"n": 0}

    def count(*args) -> None:  # type: ignore[no-untyped-def]
        counter["n"] += 1

    event.listen(core.engine, "before_cursor_execute", count)
    return counter, lambda: event.remove(core.engine, "before_cursor_execute", count)


@pytest.mark.parametrize("private", [False, True], ids=["own", "shared"])
def test_select_fetch_search_and_refresh_cost_the_same_queries_at_any_mailbox_size(core, private):  # type: ignore[no-untyped-def]
    owner, _ = _account(core, "owner@example.org")
    reader, _ = _account(core, "reader@example.org")
    counts = []
    for size in (3, 60):
        box = core.store.create_collection(owner, "mailbox", f"Box{size}", actor=owner)
        core.store.grant(box.id, None, reader, "write", actor=owner)
        actor = reader if private else owner
        for n in range(size):
            core.store.deliver_message(box.id, SMALL + b"%d" % n, actor=owner, flags=["\\Seen"] if n % 2 else [])
        with core.store.read() as s:
            assert len(list(s.scalars(select(Item.id).where(Item.collection_id == box.id)))) == size
        counter, stop = _count_queries(core)
        try:
            snapshot = core.store.open_mailbox(box.id, actor, claim_recent=True)
            rows = core.store.message_rows(box.id, snapshot.uids, actor, cached=True)
            hits = core.store.search_messages(box.id, q.And([q.Header("subject", "lunch"), q.Flag("\\Seen", False)]),
                                              actor)
            core.store.mailbox_changes(box.id, snapshot.collection.modseq, snapshot.uids[-1], actor)
        finally:
            stop()
        assert len(rows) == size and len(hits) == ((size + 1) // 2 if not private else size)
        counts.append(counter["n"])
    assert counts[0] == counts[1], counts


def test_a_members_own_flags_travel_with_copy_and_move_rfc3501_6_4_7_and_rfc6851(core):  # type: ignore[no-untyped-def]
    boss, _ = _account(core, "boss@example.org")
    ann, ann_inbox = _account(core, "ann@example.org")
    group = core.store.create_group("Office", "boss@example.org")
    core.store.add_member("Office", "ann@example.org", can_write=True)
    shared = core.store.mailbox(group.principal_id, "INBOX", boss)
    core.store.deliver_message(shared.id, SMALL, actor=boss, flags=["\\Flagged"])
    core.store.deliver_message(shared.id, SMALL, actor=ann, flags=["\\Seen", "$Team"])  # Ann's APPEND
    assert core.store.message_rows(shared.id, [2], boss)[0].flags == ["$Team"]
    assert core.store.message_rows(shared.id, [2], ann)[0].flags == ["\\Seen", "$Team"]
    # Into Ann's own mailbox her view becomes the message's flags; the boss's \Flagged stays behind.
    assert core.store.copy_messages(shared.id, [1, 2], ann_inbox.id, actor=ann) == [(1, 1), (2, 2)]
    assert [r.flags for r in core.store.message_rows(ann_inbox.id, [1, 2], ann)] == [[], ["\\Seen", "$Team"]]
    # Back into the group mailbox by MOVE: her \Seen is hers there, the keyword is everyone's.
    assert core.store.copy_messages(ann_inbox.id, [2], shared.id, actor=ann, move=True) == [(2, 3)]
    assert core.store.message_rows(shared.id, [3], ann)[0].flags == ["\\Seen", "$Team"]
    assert core.store.message_rows(shared.id, [3], boss)[0].flags == ["$Team"]
    # Deleting the mailbox takes its index and per-user rows along (ON DELETE CASCADE).
    core.store.delete_collection(shared.id)
    with core.store.read() as s:
        from kantoor.storage.models import MailUserFlags

        assert s.scalar(select(MailUserFlags.item_id).where(MailUserFlags.principal_id == ann)) is None
        ids = list(s.scalars(select(Item.id)))
        assert set(s.scalars(select(MessageHeader.item_id))) <= set(ids)
        assert set(s.scalars(select(MessageText.item_id))) <= set(ids)


def test_a_missing_address_header_is_nil_in_the_envelope_rfc3501_7_4_2() -> None:
    from kantoor.storage.message_index import index_message_bytes

    assert index_message_bytes(b"Subject: x\r\n\r\nb").envelope == '(NIL "x" NIL NIL NIL NIL NIL NIL NIL NIL)'
    reply_to = index_message_bytes(b"From: A <a@b.c>\r\n\r\nb").envelope
    assert reply_to == '(NIL NIL (("A" NIL "a" "b.c")) (("A" NIL "a" "b.c")) (("A" NIL "a" "b.c")) NIL NIL NIL NIL NIL)'
