"""Migration 0009: queued messages keep how many recipients they were queued for (the hourly recipient limit)."""

from __future__ import annotations

from sqlalchemy import text


def test_upgrade_counts_the_recipients_each_queued_message_still_has(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from harness import make_settings

    from kantoor.core import open_core
    from kantoor.storage.database import alembic_config
    from kantoor.storage.outbound import NewOutbound

    settings = make_settings(tmp_path / "data", database_url)
    core = open_core(settings)
    try:
        two = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net", "b@y.net"], b"hi"))
        one = core.store.enqueue_outbound(NewOutbound("ann@example.org", ["a@x.net"], b"hi"))
        command.downgrade(alembic_config(core.engine), "0008")
        with core.engine.begin() as conn:
            conn.execute(text("UPDATE outbound_messages SET recipients = 'not json' WHERE id = :id"), {"id": one.id})
        command.upgrade(alembic_config(core.engine), "head")
        with core.engine.connect() as conn:
            counts = dict(conn.execute(text("SELECT id, recipient_count FROM outbound_messages")).all())
        assert counts == {two.id: 2, one.id: 0}
    finally:
        core.close()
