"""Migration 0007: ``items.inline_body`` moves to the end of the SQLite row and every row keeps its data."""

from __future__ import annotations

from sqlalchemy import text

_BIG = b"From: a@example.org\r\nSubject: big\r\n\r\n" + bytes(range(256)) * 200  # overflow pages on SQLite


def _insert_item(conn, item_id: int, name: str, body: bytes | None, blob: str | None = None) -> None:  # type: ignore[no-untyped-def]
    conn.execute(text(
        "INSERT INTO items (id, collection_id, name, uid, blob_sha256, inline_body, size, etag, content_type, modseq,"
        " created_at, updated_at, component, recurring, fn, emails, flags, subject, from_addr, to_addr, message_id,"
        " imap_envelope) VALUES (:id, 1, :name, :id, :blob, :body, :size, '\"e\"', 'message/rfc822', :id,"
        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '', false, '', '', '\\Seen', :subject, '', '', '',"
        " '(NIL \"env\")')"), {"id": item_id, "name": name, "body": body, "blob": blob, "size": len(body or b""),
                                   "subject": "subject " + name})


def test_migration_0007_moves_inline_body_last_and_keeps_rows(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from harness import make_settings

    from kantoor.core import open_core
    from kantoor.storage.database import alembic_config, make_engine

    settings = make_settings(tmp_path / "data", database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    small = b"From: b@example.org\r\n\r\nhi\r\n"
    try:
        command.upgrade(alembic_config(engine), "0006")
        with engine.begin() as conn:  # a mailbox as 0006 stored it: big and small inline bodies, a blob, none
            conn.execute(text("INSERT INTO principals (id, kind) VALUES (1, 'account')"))
            conn.execute(text("INSERT INTO collections (id, owner_id, kind, path, display_name, description, color,"
                              " components, special_use, modseq, uidvalidity, uidnext, created_at, updated_at)"
                              " VALUES (1, 1, 'mailbox', 'INBOX', '', '', '', '', '', 4, 1, 4,"
                              " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO blobs (sha256, size, refcount, updated_at)"
                              " VALUES (:sha, 10, 1, CURRENT_TIMESTAMP)"), {"sha": "ab" * 32})
            _insert_item(conn, 1, "big", _BIG)
            _insert_item(conn, 2, "small", small)
            _insert_item(conn, 3, "in-a-blob", None, blob="ab" * 32)
            for item_id in (1, 2, 3):  # the rows that reference items (ON DELETE CASCADE) must survive too
                conn.execute(text("INSERT INTO message_flags (item_id, collection_id, uid, flags, modseq)"
                                  " VALUES (:id, 1, :id, '\\Seen', :id)"), {"id": item_id})
                conn.execute(text("INSERT INTO message_texts (item_id, body) VALUES (:id, 'text')"), {"id": item_id})
        command.upgrade(alembic_config(engine), "0007")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, name, inline_body, blob_sha256, size, subject, imap_envelope"
                                     " FROM items ORDER BY id")).all()
            assert [(r[0], r[1], r[2] and bytes(r[2]), r[3], r[4], r[5], r[6]) for r in rows] == [
                (1, "big", _BIG, None, len(_BIG), "subject big", '(NIL "env")'),
                (2, "small", small, None, len(small), "subject small", '(NIL "env")'),
                (3, "in-a-blob", None, "ab" * 32, 0, "subject in-a-blob", '(NIL "env")')]
            assert conn.execute(text("SELECT count(*) FROM message_flags")).scalar() == 3
            assert conn.execute(text("SELECT count(*) FROM message_texts")).scalar() == 3
            if engine.dialect.name == "sqlite":
                columns = [r[1] for r in conn.execute(text("PRAGMA table_info(items)"))]
                assert columns[-1] == "inline_body" and columns.count("inline_body") == 1
                assert "inline_body_last" not in columns
                assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
                assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        command.downgrade(alembic_config(engine), "0006")  # the layout means nothing to 0006: data stays
        command.upgrade(alembic_config(engine), "head")
        with engine.connect() as conn:
            assert bytes(conn.execute(text("SELECT inline_body FROM items WHERE id = 1")).scalar()) == _BIG
    finally:
        engine.dispose()
    core = open_core(settings)  # the Store reads the migrated rows through the model
    try:
        with core.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM items")).scalar() == 3
    finally:
        core.close()
