"""Engine construction and schema migrations (SQLite in WAL mode, or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Execution option a Store sets on write transactions: on SQLite they start with
# BEGIN IMMEDIATE so two writers queue on the lock instead of failing to upgrade
# a read lock half-way (SQLITE_BUSY in the middle of a transaction).
WRITE_OPTION = "kantoor_write"
# Where the SQLite "begin" event leaves the BEGIN statement for the dialect's do_begin() (connection info).
_BEGIN_KEY = "kantoor_begin"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    """Create the engine for ``url``; SQLite files get WAL, a busy timeout and FKs."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=20,
            max_overflow=20,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # Take transaction control away from pysqlite so BEGIN is ours.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL, not NORMAL: in WAL mode NORMAL skips the fsync at commit, so a power loss could
            # undo a delivery after SMTP said 250 or IMAP said OK (RFC 5321 §6.1), or a PUT after
            # its 201, while the blob files it references are fsync'ed. FULL fsyncs the WAL at every
            # commit; group commit (storage/mail.py) shares that fsync among concurrent deliveries.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Only say which BEGIN: the dialect's do_begin() below runs it.
            write = conn.get_execution_options().get(WRITE_OPTION, False)
            conn.connection.info[_BEGIN_KEY] = "BEGIN IMMEDIATE" if write else "BEGIN"

        def _do_begin(dbapi_conn) -> None:  # type: ignore[no-untyped-def]
            # The BEGIN straight on the sqlite3 connection, not with conn.exec_driver_sql() in the event:
            # that built an execution context and a result for a statement without parameters or rows, most
            # of the CPU of a write transaction's start (every IMAP APPEND pays it). In do_begin() an error
            # (SQLITE_BUSY after the busy timeout) is still wrapped as SQLAlchemy's OperationalError.
            dbapi_conn.driver_connection.execute(dbapi_conn.info.pop(_BEGIN_KEY, "BEGIN"))

        engine.dialect.do_begin = _do_begin  # type: ignore[method-assign]  # this engine's dialect only
        return engine
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every pending migration (safe to run at each start)."""
    command.upgrade(alembic_config(engine), "head")
