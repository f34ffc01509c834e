"""The server's search indexer (kantoor.storage.search_backlog): mail delivered over SMTP gets its SEARCH rows
once deliveries pause, without any SEARCH asking for them, in every server process; and a backlog left by a
stopped server is indexed when the next one starts. IMAP SEARCH finds the messages either way (RFC 3501
6.4.4)."""

from __future__ import annotations

import imaplib
import smtplib

from sqlalchemy import func, select

from kantoor.storage.models import MessageText, SearchBacklog
from tests.harness import wait_until


def _counts(core) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(messages in the search backlog, messages with their text row)."""
    with core.store.read() as s:
        return (int(s.scalar(select(func.count()).select_from(SearchBacklog))),
                int(s.scalar(select(func.count()).select_from(MessageText))))


def _message(login: str, n: int) -> bytes:
    return (f"From: Ann <ann@example.net>\r\nTo: {login}\r\nSubject: note {n}\r\n"
            f"Message-ID: <note{n}@example.net>\r\n\r\nbody word{n}x\r\n").encode()


def _search(server, login: str, password: str, *criteria: str) -> list[int]:  # type: ignore[no-untyped-def]
    with imaplib.IMAP4(server.host, server.ports["imap"], timeout=30) as imap:
        imap.login(login, password)
        imap.select("INBOX", readonly=True)
        _status, data = imap.uid("SEARCH", None, *criteria)
        return [int(u) for u in data[0].split()]


def test_mail_is_indexed_after_delivery_without_a_search_in_every_process(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(KANTOOR_SERVER_PROCESSES="2")
    login, password = server.make_user()
    # Eight connections, one after another: the two processes each take some (kantoor.accept_balance).
    connections = [smtplib.SMTP(server.host, server.ports["smtp"], timeout=30) for _ in range(8)]
    try:
        for n in range(24):
            connections[n % 8].sendmail("ann@example.net", [login], _message(login, n))
    finally:
        for smtp in connections:
            smtp.quit()
    core = server.core()
    assert wait_until(lambda: _counts(core) == (0, 24)), _counts(core)
    assert _search(server, login, password, "SUBJECT", '"note 17"') == [18]
    assert _search(server, login, password, "BODY", "word5x") == [6]


def test_copies_of_messages_still_waiting_are_indexed_too_rfc3501_6_4_7(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server()
    login, password = server.make_user()
    with smtplib.SMTP(server.host, server.ports["smtp"], timeout=30) as smtp:
        for n in range(5):
            smtp.sendmail("ann@example.net", [login], _message(login, n))
    # At once, before the indexer's pause: the copies have no rows to share yet and wait in the backlog too.
    with imaplib.IMAP4(server.host, server.ports["imap"], timeout=30) as imap:
        imap.login(login, password)
        imap.create("Archive")
        imap.select("INBOX")
        assert imap.copy("1:5", "Archive")[0] == "OK"
    core = server.core()
    assert wait_until(lambda: _counts(core) == (0, 10)), _counts(core)  # no SEARCH asked for them


def test_a_backlog_left_by_a_stopped_server_is_indexed_at_the_next_start(start_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    first = start_server(data)
    login, password = first.make_user()
    store = first.core().store
    account = store.get_account(login)
    inbox = store.mailbox(account.principal_id, "INBOX")
    for n in range(3):  # delivered by another process (this one): the running server's indexer does not know them
        store.deliver_message(inbox.id, _message(login, n))
    assert _counts(first.core()) == (3, 0)
    first.stop()
    second = start_server(data)
    assert wait_until(lambda: _counts(second.core()) == (0, 3)), _counts(second.core())
    assert _search(second, login, password, "FROM", "ann", "SUBJECT", '"note 2"') == [3]
