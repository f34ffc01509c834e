"""SQLite: every write transaction of a Store runs on one kept connection and Session
(kantoor.storage.transactions.KeptWriter), begun and committed on the sqlite3 connection itself.
What a write returns, what it leaves in the database and what a failed write undoes stay as they
were with a Session per transaction.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from harness import make_settings
from sqlalchemy import inspect, select
from sqlalchemy.exc import OperationalError

from kantoor.core import open_core
from kantoor.storage.models import Collection, ServerNotice
from tests.storage.test_sqlite_begin import _other_writer_locked_out


class InjectedFailure(RuntimeError):
    pass


@pytest.fixture
def sqlite_core(tmp_path: Path):  # type: ignore[no-untyped-def]
    core = open_core(make_settings(tmp_path / "data"))
    yield core
    core.close()


def test_each_write_holds_the_write_lock_from_its_start_and_releases_it_at_commit(sqlite_core) -> None:  # type: ignore[no-untyped-def]
    store = sqlite_core.store
    path = store.engine.url.database
    for _ in range(2):  # the second write runs on the kept connection, begun on the sqlite3 connection
        with store.write() as s:
            s.execute(select(1))  # no write yet: only BEGIN IMMEDIATE can hold the lock
            assert _other_writer_locked_out(path)
        assert not _other_writer_locked_out(path)


def test_a_failed_write_is_rolled_back_and_the_next_one_commits(sqlite_core) -> None:  # type: ignore[no-untyped-def]
    store = sqlite_core.store
    account = store.create_account("ann@example.org", "", "standard")
    inbox = store.mailbox(account.principal_id, "INBOX")
    with pytest.raises(InjectedFailure), store.write() as s:
        s.get(Collection, inbox.id).display_name = "changed"
        s.flush()
        raise InjectedFailure
    assert store.mailbox(account.principal_id, "INBOX").display_name == inbox.display_name
    assert not _other_writer_locked_out(store.engine.url.database)
    store.deliver_message(inbox.id, b"Subject: after\r\n\r\nbody\r\n")
    assert [m.subject for m in store.list_messages(inbox.id)] == ["after"]


def test_objects_a_write_flushed_or_deleted_leave_it_detached_and_stay_so(sqlite_core) -> None:  # type: ignore[no-untyped-def]
    """As a Session per transaction left them: a write that flushed ORM objects ends the Session's own
    transaction with the database's and lets that Session go, a failed one rolls its objects back, and a
    later failed write changes nothing of earlier ones."""
    store = sqlite_core.store
    account = store.create_account("ann@example.org", "", "standard")
    with store.write() as s:
        notice = ServerNotice(account_id=account.id, kind="first")
        gone = ServerNotice(account_id=account.id, kind="gone")
        s.add_all([notice, gone])
    with store.write() as s:
        s.delete(s.get(ServerNotice, (account.id, "gone")))
    inbox = store.mailbox(account.principal_id, "INBOX")
    item = store.deliver_message(inbox.id, b"Subject: x\r\n\r\ny\r\n")  # raw statements, no ORM flush
    with pytest.raises(InjectedFailure), store.write() as s:
        second = ServerNotice(account_id=account.id, kind="second")
        s.add(second)
        s.flush()
        raise InjectedFailure
    assert inspect(second).transient  # rolled back: no row, no identity
    assert inspect(notice).detached and inspect(gone).detached and inspect(item).detached
    assert inspect(notice).identity == (account.id, "first")
    with store.read() as s:
        assert [n.kind for n in s.scalars(select(ServerNotice))] == ["first"]


def test_a_begin_refused_by_a_locked_database_raises_sqlalchemys_operational_error(sqlite_core) -> None:  # type: ignore[no-untyped-def]
    store = sqlite_core.store
    account = store.create_account("ann@example.org", "", "standard")
    inbox = store.mailbox(account.principal_id, "INBOX")
    with store.write() as s:  # the kept Session's transaction goes on from here: the next BEGIN is on sqlite3
        driver = s.connection().connection.driver_connection
    driver.execute("PRAGMA busy_timeout=0")  # fail at once instead of after 30 s
    holder = sqlite3.connect(store.engine.url.database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a writer outside the gate (sqlite3 by hand)
        with pytest.raises(OperationalError, match="locked"):
            store.deliver_message(inbox.id, b"Subject: refused\r\n\r\n1\r\n")
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    store.deliver_message(inbox.id, b"Subject: taken\r\n\r\n2\r\n")
    assert [m.subject for m in store.list_messages(inbox.id)] == ["taken"]


def test_disposing_of_the_engine_closes_the_kept_connection(tmp_path: Path) -> None:
    core = open_core(make_settings(tmp_path / "data"))
    with core.store.write() as s:
        driver = s.connection().connection.driver_connection
    core.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        driver.execute("SELECT 1")
