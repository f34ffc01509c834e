"""vCard search columns (RFC 6352 §10.5.4 text-match in SQL): values, collations, the index written
with every vCard, and migration 0003 back-filling cards stored before it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kantoor.storage.card_search import (
    ascii_casemap,
    card_values,
    like_pattern,
    search_column,
    text_matches,
    unicode_casemap,
)

CARD = ("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:u1\r\nitem1.FN:Ada\r\n  Lovelace\r\nN:Love\\;lace;Ada;;;\r\n"
        'EMAIL;TYPE="work,x:y":ada@example.org\r\nEMAIL:countess@example.org\r\nTEL:+44 20\r\n'
        "NICKNAME:Countess,Enchantress\r\nORG:Analytical\\, Engines;Research\r\nNOTE:FN:not a name\r\nEND:VCARD\r\n")


def test_card_values_unfold_unescape_and_split_structured_properties() -> None:
    values = card_values(CARD)
    assert values["FN"] == ["Ada Lovelace"]
    assert values["N"] == ["Love;lace;Ada", "Love;lace", "Ada", "Ada Love;lace"]
    assert values["EMAIL"] == ["ada@example.org", "countess@example.org"]
    assert values["NICKNAME"] == ["Countess,Enchantress", "Countess", "Enchantress"]
    assert values["ORG"] == ["Analytical, Engines;Research", "Analytical, Engines", "Research"]
    assert "NOTE" not in values


def test_collations_rfc4790_and_rfc5051() -> None:
    assert ascii_casemap("ÉLODIE") == "Élodie"
    assert unicode_casemap("élodie") == unicode_casemap("ÉLODIE")
    assert text_matches(["Élodie"], "élo", "i;unicode-casemap", "starts-with")
    assert not text_matches(["Élodie"], "élo", "i;ascii-casemap", "starts-with")
    assert text_matches(["Élodie"], "ÉLO", "i;ascii-casemap", "starts-with")
    assert not text_matches(["Élodie"], "élodie", "i;octet", "equals")
    assert text_matches(["a", "Élodie"], "die", "i;octet", "ends-with")


@pytest.mark.parametrize("match_type", ["equals", "contains", "starts-with", "ends-with"])
def test_sql_pattern_is_a_superset_of_the_exact_match(match_type: str) -> None:
    values = ["Ada Lovelace", "Ádá"]
    column = search_column(values)
    for probe in ("ada lovelace", "ADA", "lace", "ádá", "Ada Lovelace", "x"):
        for collation in ("i;octet", "i;ascii-casemap", "i;unicode-casemap"):
            if text_matches(values, probe, collation, match_type):
                assert like_pattern(probe, match_type) in column, (probe, collation)


def test_put_item_fills_the_search_columns(core) -> None:  # type: ignore[no-untyped-def]
    ann = core.store.create_account("ann@example.org", "", "standard")
    book = core.store.find_collection(ann.principal_id, "addressbook", "contacts", ann.principal_id)
    item, _ = core.store.put_item(book.id, "ada.vcf", CARD.encode(), "text/vcard", actor=ann.principal_id)
    assert item.card_tel == search_column(["+44 20"])
    assert item.card_org is not None and "\n" + unicode_casemap("research") + "\n" in item.card_org
    cal = core.store.find_collection(ann.principal_id, "calendar", "calendar", ann.principal_id)
    event = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:e\r\nDTSTAMP:20260101T000000Z\r\n"
             b"DTSTART:20260101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    event_item, _ = core.store.put_item(cal.id, "e.ics", event, "text/calendar", actor=ann.principal_id)
    assert event_item.card_fn is None


def test_migration_0003_backfills_inline_vcards(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from harness import make_settings

    from kantoor.core import open_core
    from kantoor.storage.database import alembic_config, make_engine

    settings = make_settings(tmp_path / "data", database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        command.upgrade(alembic_config(engine), "0002")
        with engine.begin() as conn:  # one vCard as 0002 stored it
            conn.execute(text("INSERT INTO principals (id, kind) VALUES (1, 'account')"))
            conn.execute(text("INSERT INTO collections (id, owner_id, kind, path, display_name, description, color,"
                              " components, special_use, modseq, uidvalidity, uidnext, created_at, updated_at)"
                              " VALUES (1, 1, 'addressbook', 'contacts', '', '', '', '', '', 1, 1, 1,"
                              " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO items (collection_id, name, inline_body, size, etag, content_type, modseq,"
                              " created_at, updated_at, component, recurring, fn, emails, flags, subject, from_addr,"
                              " to_addr, message_id) VALUES (1, 'ada.vcf', :body, 1, '\"e\"', 'text/vcard', 1,"
                              " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'VCARD', false, 'Ada', '', '', '', '', '',"
                              " '')"), {"body": CARD.encode()})
        command.upgrade(alembic_config(engine), "0003")
        with engine.connect() as conn:
            tel, nickname = conn.execute(text("SELECT card_tel, card_nickname FROM items")).one()
        assert tel == search_column(["+44 20"])
        assert "\n" + unicode_casemap("enchantress") + "\n" in nickname
    finally:
        engine.dispose()
    open_core(settings).close()  # the rest of the migrations still apply on top


def test_cards_stored_before_indexing_are_indexed_on_demand(core) -> None:  # type: ignore[no-untyped-def]
    from kantoor.storage.models import Item

    ann = core.store.create_account("ann@example.org", "", "standard")
    book = core.store.find_collection(ann.principal_id, "addressbook", "contacts", ann.principal_id)
    big = CARD.replace("NOTE:FN:not a name", "NOTE:" + "x" * 80_000).encode()  # kept in a blob file
    item, _ = core.store.put_item(book.id, "big.vcf", big, "text/vcard", actor=ann.principal_id)
    assert item.blob_sha256 is not None
    with core.engine.begin() as conn:  # as migration 0003 leaves a card it could not read
        conn.execute(Item.__table__.update().values(card_fn=None, card_tel=None))
    condition = ("match", "TEL", "equals", "+44 20")
    assert [i.name for i in core.store.contact_candidates(book.id, condition, ann.principal_id)] == ["big.vcf"]
    assert core.store.index_unindexed_cards(book.id) == 1
    assert core.store.index_unindexed_cards(book.id) == 0
    assert core.store.get_item(book.id, "big.vcf", ann.principal_id).card_tel == search_column(["+44 20"])
    assert core.store.contact_candidates(book.id, ("match", "TEL", "equals", "+44"), ann.principal_id) == []
