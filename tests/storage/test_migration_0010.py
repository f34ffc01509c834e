"""Migration 0010: a U-label domain stored by an earlier version becomes its A-label, and stays a mail domain."""

from __future__ import annotations

from sqlalchemy import text


def test_upgrade_rewrites_u_label_domains_to_a_labels(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from harness import make_settings

    from kantoor.core import open_core
    from kantoor.storage.database import alembic_config

    settings = make_settings(tmp_path / "data", database_url)
    core = open_core(settings)
    try:
        command.downgrade(alembic_config(core.engine), "0009")
        with core.engine.begin() as conn:  # what the earlier add_domain stored
            for name in ("bücher.example", "plain.example", "xn--fa-hia.example", "faß.example", "☃.example"):
                conn.execute(text("INSERT INTO domains (name, created_at) VALUES (:n, CURRENT_TIMESTAMP)"),
                             {"n": name})
        command.upgrade(alembic_config(core.engine), "head")
        with core.engine.connect() as conn:
            names = {r[0] for r in conn.execute(text("SELECT name FROM domains"))}
        # faß.example's A-label was stored already: the second spelling is left; ☃ has no A-label (IDNA 2008).
        assert {"xn--bcher-kva.example", "plain.example", "xn--fa-hia.example", "faß.example",
                "☃.example"} <= names
        assert "bücher.example" not in names
        assert core.store.is_local_domain("bücher.example") and core.store.is_local_domain("xn--bcher-kva.example")
    finally:
        core.close()
