"""ARCHITECTURE invariant 2: two `kantoor serve` processes on one PostgreSQL behave as one server."""

from __future__ import annotations

import imaplib
import smtplib
from email.message import EmailMessage


def test_mail_delivered_through_one_process_is_read_through_the_other(start_server, postgres_url,
                                                                      tmp_path) -> None:  # type: ignore[no-untyped-def]
    shared = tmp_path / "shared-data"  # one blob store for both, as at scale
    first = start_server(shared, KANTOOR_STORAGE_DATABASE_URL=postgres_url)
    second = start_server(shared, KANTOOR_STORAGE_DATABASE_URL=postgres_url)
    assert first.admin_login and not second.admin_login  # the database, not the process, knows it is set up
    login, password = first.admin_login, first.admin_password

    with imaplib.IMAP4(second.host, second.ports["imap"], timeout=30) as watcher:
        watcher.login(login, password)
        watcher.select("INBOX")
        msg = EmailMessage()
        msg["From"] = "someone@example.net"
        msg["To"] = login
        msg["Subject"] = "across processes"
        msg.set_content(("x" * 70 + "\n") * 600)  # > 40 kB: lives in the shared blob store
        with smtplib.SMTP(first.host, first.ports["smtp"], timeout=30) as smtp:
            smtp.send_message(msg)
        watcher.noop()
        _status, data = watcher.uid("SEARCH", None, "ALL")
        uids = data[0].split()
        assert len(uids) == 1
        _status, parts = watcher.uid("FETCH", uids[0], "(BODY.PEEK[])")
        assert b"across processes" in parts[0][1] and (b"x" * 70 + b"\n") * 3 in parts[0][1].replace(b"\r\n", b"\n")

    # The UIDs keep increasing whichever process allocates them.
    with smtplib.SMTP(second.host, second.ports["smtp"], timeout=30) as smtp:
        smtp.send_message(msg)
    with imaplib.IMAP4(first.host, first.ports["imap"], timeout=30) as imap:
        imap.login(login, password)
        imap.select("INBOX")
        _status, data = imap.uid("SEARCH", None, "ALL")
        assert [int(u) for u in data[0].split()] == [1, 2]
