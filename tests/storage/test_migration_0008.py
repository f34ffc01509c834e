"""Migration 0008: the search backlog; a downgrade leaves no message unsearchable."""

from __future__ import annotations

from sqlalchemy import text

MESSAGE = b"From: Ann <ann@example.net>\r\nSubject: Lunch\r\n\r\nsee you at noon\r\n"


def test_downgrade_hands_the_backlog_to_the_earlier_lazy_index(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from harness import make_settings

    from kantoor.core import open_core
    from kantoor.storage.database import alembic_config

    settings = make_settings(tmp_path / "data", database_url)
    core = open_core(settings)
    try:
        account = core.store.create_account("ann@example.org", "", "standard")
        inbox = core.store.mailbox(account.principal_id, "INBOX")
        indexed = core.store.deliver_message(inbox.id, MESSAGE)
        assert core.store.index_search_backlog() == 1
        waiting = core.store.deliver_message(inbox.id, MESSAGE)  # still in the backlog
        command.downgrade(alembic_config(core.engine), "0007")
        with core.engine.connect() as conn:
            envelopes = dict(conn.execute(text("SELECT id, imap_envelope FROM items")).all())
            texts = {r[0] for r in conn.execute(text("SELECT item_id FROM message_texts"))}
            tables = conn.execute(text(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'search_backlog'"
                if core.engine.dialect.name == "postgresql" else
                "SELECT count(*) FROM sqlite_master WHERE name = 'search_backlog'")).scalar()
        # 0007's SEARCH and FETCH compute what a NULL envelope marks as missing, search rows included.
        assert envelopes[waiting.id] is None and envelopes[indexed.id] is not None
        assert texts == {indexed.id} and tables == 0
        command.upgrade(alembic_config(core.engine), "head")
    finally:
        core.close()
