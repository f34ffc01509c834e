"""The search backlog (kantoor.storage.search_backlog) on SQLite and PostgreSQL: a delivery leaves its SEARCH
rows to it, a SEARCH never misses a message still in it (RFC 3501 6.4.4), each message's rows are written
exactly once whoever indexes it, and COPY, MOVE and EXPUNGE keep it right."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from kantoor.storage import mail_search as q
from kantoor.storage import search_backlog
from kantoor.storage.models import MessageHeader, MessageText, SearchBacklog

LUNCH = b"From: Ann <ann@example.net>\r\nSubject: Lunch\r\n\r\nsee you at noon\r\n"
REPORT = b"From: Bob <bob@example.net>\r\nSubject: Report\r\n\r\nthe quarterly numbers\r\n"


def _account(core, login="ann@example.org"):  # type: ignore[no-untyped-def]
    account = core.store.create_account(login, "", "standard")
    return account.principal_id, core.store.mailbox(account.principal_id, "INBOX", account.principal_id)


def _count(core, table) -> int:  # type: ignore[no-untyped-def]
    with core.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(table)))


def _backlog(core) -> set[int]:  # type: ignore[no-untyped-def]
    with core.store.read() as s:
        return set(s.scalars(select(SearchBacklog.item_id)))


def test_a_search_indexes_what_its_mailbox_has_in_the_backlog_first_rfc3501_6_4_4(core) -> None:  # type: ignore[no-untyped-def]
    me, inbox = _account(core)
    archive = core.store.mailbox(me, "Archive", me)
    lunch = core.store.deliver_message(inbox.id, LUNCH, actor=me)
    report = core.store.deliver_message(inbox.id, REPORT, actor=me)
    kept = core.store.deliver_message(archive.id, REPORT, actor=me)
    assert _backlog(core) == {lunch.id, report.id, kept.id} and _count(core, MessageText) == 0
    assert core.store.search_messages(inbox.id, q.Header("subject", "LUNCH"), me) == [(1, lunch.modseq)]
    assert core.store.search_messages(inbox.id, q.Text("quarterly", headers_too=False), me) == [(2, report.modseq)]
    assert _backlog(core) == {kept.id}  # another mailbox's message waits for the indexer
    assert core.store.index_search_backlog() == 1 and _backlog(core) == set()
    assert core.store.index_search_backlog() == 0
    assert core.store.search_messages(archive.id, q.Header("from", "bob"), me) == [(1, kept.modseq)]


def test_each_message_gets_its_rows_once_when_indexers_race(core) -> None:  # type: ignore[no-untyped-def]
    me, inbox = _account(core)
    items = [core.store.deliver_message(inbox.id, LUNCH + b"%d" % n, actor=me) for n in range(30)]
    errors: list[BaseException] = []

    def index() -> None:
        try:
            while core.store.index_search_backlog(limit=7):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    racers = [threading.Thread(target=index) for _ in range(3)]
    for racer in racers:
        racer.start()
    hits = core.store.search_messages(inbox.id, q.Header("subject", "lunch"), me)  # a SEARCH races them too
    for racer in racers:
        racer.join(60)
    assert errors == [] and _backlog(core) == set()
    assert len(hits) == 30
    assert _count(core, MessageText) == 30 and _count(core, MessageHeader) == 30 * 2
    with core.store.read() as s:
        assert set(s.scalars(select(MessageText.item_id))) == {item.id for item in items}


def test_copy_move_and_expunge_of_a_message_in_the_backlog_rfc3501_6_4_7_rfc6851(core) -> None:  # type: ignore[no-untyped-def]
    me, inbox = _account(core)
    archive = core.store.mailbox(me, "Archive", me)
    trash = core.store.mailbox(me, "Trash", me)
    core.store.deliver_message(inbox.id, LUNCH, actor=me)
    core.store.deliver_message(inbox.id, REPORT, actor=me)
    assert core.store.copy_messages(inbox.id, [1], archive.id, actor=me) == [(1, 1)]
    assert len(_backlog(core)) == 3  # the copy has no rows to share yet: it waits too
    core.store.copy_messages(inbox.id, [2], trash.id, actor=me, move=True)
    assert len(_backlog(core)) == 3
    assert [uid for uid, _ in core.store.search_messages(archive.id, q.Header("subject", "lunch"), me)] == [1]
    assert [uid for uid, _ in core.store.search_messages(trash.id, q.Text("quarterly", headers_too=True), me)] == [1]
    assert core.store.search_messages(inbox.id, q.Text("quarterly", headers_too=True), me) == []
    core.store.store_flags(inbox.id, [1], ["\\Deleted"], "add", actor=me)
    assert core.store.expunge_messages(inbox.id, actor=me) == [1]
    assert _backlog(core) == set()
    assert _count(core, MessageText) == 2  # the copy and the moved message


def test_a_message_the_parser_fails_on_does_not_stay_in_the_backlog(core, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    me, inbox = _account(core)
    core.store.deliver_message(inbox.id, LUNCH, actor=me)
    core.store.deliver_message(inbox.id, REPORT, actor=me)
    parse = search_backlog.search_fields

    def fails_on_lunch(raw):  # type: ignore[no-untyped-def]
        if b"Lunch" in raw:
            raise ValueError("a parser bug")
        return parse(raw)

    monkeypatch.setattr(search_backlog, "search_fields", fails_on_lunch)
    assert core.store.search_messages(inbox.id, q.Text("quarterly", headers_too=True), me)[0][0] == 2
    assert core.store.search_messages(inbox.id, q.Header("subject", "lunch"), me) == []  # not searchable, not stuck
    assert _backlog(core) == set() and _count(core, MessageText) == 2


def test_the_indexer_waits_for_deliveries_to_pause_but_not_for_ever(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = [100.0]
    monkeypatch.setattr(search_backlog.time, "monotonic", lambda: clock[0])
    backlog = search_backlog.LocalBacklog()
    assert not backlog.due()
    backlog.noted([1, 2])
    assert not backlog.due()  # deliveries may go on
    clock[0] += search_backlog.QUIET_SECONDS
    assert backlog.due()
    assert backlog.take() == [1, 2] and not backlog.due() and len(backlog) == 0
    # A load that never pauses: a delivery every 50 ms. Due once the oldest waited MAX_DELAY_SECONDS.
    start = clock[0]
    backlog.noted([3])
    while not backlog.due():
        clock[0] += 0.05
        backlog.noted([4])
    assert abs(clock[0] - start - search_backlog.MAX_DELAY_SECONDS) < 0.1
    assert backlog.take(2) == [3, 4] and backlog.due()  # still overdue: the rest follows at once
    assert set(backlog.take()) == {4} and not backlog.due() and len(backlog) == 0


def test_a_search_reads_the_backlog_not_the_whole_mailbox() -> None:
    """SQLite's plan for "does this mailbox have messages in the backlog" scans the (short) backlog and reads each
    entry's mailbox by primary key; joined the other way round it walked every message of the mailbox on every
    SEARCH. (PostgreSQL plans from its statistics.)"""
    from sqlalchemy import create_engine
    from sqlalchemy.dialects import sqlite

    from kantoor.storage.models import Base

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    statement = search_backlog.in_mailbox(7).limit(1).compile(dialect=sqlite.dialect(),
                                                               compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}")]
    assert plan[0].startswith("SCAN search_backlog"), plan
    assert not any("ix_items_collection" in step for step in plan), plan
