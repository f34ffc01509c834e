"""Schema: Alembic migrations build exactly the models; SQLite runs in WAL mode."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from kantoor.storage.models import Base


def test_migrations_match_the_models(core) -> None:  # type: ignore[no-untyped-def]
    with core.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], "models changed without a migration: " + repr(diff)


def test_upgrade_is_idempotent_and_keeps_data(core) -> None:  # type: ignore[no-untyped-def]
    from kantoor.storage import upgrade

    core.store.create_account("keep@example.org", "", "free")
    upgrade(core.engine)
    assert core.store.get_account("keep@example.org") is not None


def test_sqlite_uses_wal_and_fsyncs_every_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kantoor.config import load_settings
    from kantoor.core import open_core

    sqlite_core = open_core(load_settings(path=None, environ={"KANTOOR_STORAGE_DATA_DIR": str(tmp_path)}))
    try:
        with sqlite_core.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            # RFC 5321 §6.1: a commit (the 250 after DATA) must survive a power loss, so the WAL is
            # fsync'ed at every commit (2 = FULL; NORMAL, 1, skips it in WAL mode).
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2
    finally:
        sqlite_core.close()
