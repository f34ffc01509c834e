"""Reads outside a Session (kantoor.storage.raw_statements.read_rows) and the MX's recipient look-up built on
them (Store.mail_recipient), on SQLite and PostgreSQL.

The look-up must give what resolve_recipient gives (the login or an alias as given, then without the
+tag; nothing for an account that is not active) and see every committed change at once: nothing is
kept between look-ups. A failed read surfaces as SQLAlchemy's DBAPIError and gives its connection back.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.exc import DBAPIError

from kantoor.storage import raw_statements as raw
from kantoor.storage.models import Account


def _checked_out(core) -> int:  # type: ignore[no-untyped-def]
    return core.store.engine.pool.checkedout()


def test_mail_recipient_matches_resolve_recipient_login_alias_and_plus_tag(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    ann = store.create_account("ann@example.org", "", "standard")
    bob = store.create_account("bob@example.org", "", "professional")
    store.add_alias("bob@example.org", "sales@example.org")
    # An alias that looks like a +tag of another account's login: as given beats without the tag.
    store.add_alias("bob@example.org", "ann+orders@example.org")
    for address, owner in [("ann@example.org", ann), ("ANN@Example.org", ann), ("ann+news@example.org", ann),
                           ("sales@example.org", bob), ("sales+x@example.org", bob),
                           ("ann+orders@example.org", bob), ("nobody@example.org", None),
                           ("nobody+ann@example.org", None)]:
        found = store.mail_recipient(address)
        resolved = store.resolve_recipient(address)
        assert (found.account_id if found else None) == (owner.id if owner else None) == (
            resolved.id if resolved else None), address
    found = store.mail_recipient("sales@example.org")
    assert found is not None
    assert (found.principal_id, found.login, found.plan, found.mail_bytes) == (
        bob.principal_id, "bob@example.org", "professional", 0)
    assert found.inbox_id == store.mailbox(bob.principal_id, "INBOX").id


def test_mail_recipient_sees_each_committed_change_at_once(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    store.create_account("cas@example.org", "", "standard")
    assert store.mail_recipient("team@example.org") is None
    store.add_alias("cas@example.org", "team@example.org")
    assert store.mail_recipient("team@example.org") is not None  # no stale "unknown" kept
    store.update_account("cas@example.org", state="suspended")
    assert store.mail_recipient("team@example.org") is None  # not active: no mail, at once
    assert store.mail_recipient("cas+x@example.org") is None
    store.update_account("cas@example.org", state="active", plan="professional")
    found = store.mail_recipient("cas+x@example.org")
    assert found is not None and found.plan == "professional"
    inbox = store.mailbox(found.principal_id, "INBOX")
    message = b"From: a@example.net\r\nSubject: usage\r\n\r\nHello\r\n"
    store.deliver_message(inbox.id, message)
    found = store.mail_recipient("cas@example.org")
    assert found is not None and found.mail_bytes >= len(message)


def test_read_rows_gives_what_a_session_reads_and_returns_its_connection(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    store.create_account("dirk@example.org", "", "standard")
    accounts = Account.__table__.c
    statement = raw.RawStatement(select(accounts.id, accounts.login, accounts.created_at)
                                 .where(accounts.login == "dirk@example.org"), store.engine.dialect)
    before = _checked_out(core)
    rows = raw.read_rows(store.engine, statement, {})
    assert _checked_out(core) == before
    with store.read() as s:
        expected = s.execute(select(Account.id, Account.login, Account.created_at)
                             .where(Account.login == "dirk@example.org")).one()
    # The types' result processing applied (a timezone-aware datetime, as the ORM gives it).
    assert rows == [{"id": expected.id, "login": expected.login, "created_at": expected.created_at}]


def test_a_failed_read_raises_dbapi_error_and_gives_its_connection_back(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    missing = Table("no_such_table", MetaData(), Column("id", Integer), Column("name", String))
    statement = raw.RawStatement(select(missing.c.id).where(missing.c.name == "x"), store.engine.dialect)
    before = _checked_out(core)
    with pytest.raises(DBAPIError):
        raw.read_rows(store.engine, statement, {})
    assert _checked_out(core) == before
    assert store.mail_recipient("nobody@example.org") is None  # the pool still serves reads
