"""SQLite transactions begin as the Store asks (kantoor.storage.database): a write transaction with
``BEGIN IMMEDIATE`` (it holds the database's write lock from its first statement, so two writers queue
instead of one failing half-way with SQLITE_BUSY), a read transaction with a deferred ``BEGIN``; and a BEGIN
that cannot get the lock fails as SQLAlchemy's OperationalError, like any other statement.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from kantoor.storage.database import WRITE_OPTION, make_engine


def _other_writer_locked_out(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return True
    else:
        other.execute("ROLLBACK")
        return False
    finally:
        other.close()


def test_write_transaction_holds_the_write_lock_from_its_begin_and_a_read_does_not(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            conn.execute(text("SELECT 1"))  # no write yet: only BEGIN IMMEDIATE can hold the lock
            assert _other_writer_locked_out(path)
        assert not _other_writer_locked_out(path)
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT x FROM t"))
        assert not _other_writer_locked_out(path)
    engine.dispose()


def test_begin_refused_by_a_locked_database_raises_sqlalchemys_operational_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=0")  # fail at once instead of after 30 s
            conn.commit()
            holder.execute("BEGIN IMMEDIATE")
            conn.execution_options(**{WRITE_OPTION: True})
            with pytest.raises(OperationalError, match="locked"):
                conn.begin()
            holder.execute("ROLLBACK")
            with conn.begin():  # the connection is still usable once the lock is free
                conn.execute(text("INSERT INTO t VALUES (1)"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
    finally:
        holder.close()
        engine.dispose()
