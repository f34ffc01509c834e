"""ARCHITECTURE invariant 2: two `kantoor serve` processes on one PostgreSQL behave as one server:
a write through one is seen, and pushed to IDLE sessions, by the other."""

from __future__ import annotations

import imaplib
import smtplib
from email.message import EmailMessage

from imapclient import IMAPClient


def test_mail_delivered_through_one_process_is_read_through_the_other(start_server, postgres_url,
                                                                      tmp_path) -> None:  # type: ignore[no-untyped-def]
    shared = tmp_path / "shared-data"  # one blob store for both, as at scale
    first = start_server(shared, KANTOOR_STORAGE_DATABASE_URL=postgres_url)
    second = start_server(shared, KANTOOR_STORAGE_DATABASE_URL=postgres_url)
    assert first.admin_login and not second.admin_login  # the database, not the process, knows it is set up
    login, password = first.admin_login, first.admin_password

    # A session on the second process waits in IDLE (RFC 2177) ...
    watcher = IMAPClient(second.host, port=second.ports["imap"], ssl=False, timeout=30)
    try:
        watcher.login(login, password)
        watcher.select_folder("INBOX")
        watcher.idle()
        msg = EmailMessage()
        msg["From"] = "someone@example.net"
        msg["To"] = login
        msg["Subject"] = "across processes"
        msg.set_content(("x" * 70 + "\n") * 600)  # > 40 kB: lives in the shared blob store
        # ... while the first process receives the message over SMTP.
        with smtplib.SMTP(first.host, first.ports["smtp"], timeout=30) as smtp:
            smtp.send_message(msg)
        responses = watcher.idle_check(timeout=15)
        watcher.idle_done()
        assert (1, b"EXISTS") in responses, responses  # notified through PostgreSQL LISTEN/NOTIFY
        fetched = watcher.fetch([1], ["BODY.PEEK[]"])
        body = next(iter(fetched.values()))[b"BODY[]"]
        assert b"across processes" in body and (b"x" * 70 + b"\n") * 3 in body.replace(b"\r\n", b"\n")
    finally:
        watcher.logout()

    # The UIDs keep increasing whichever process allocates them.
    with smtplib.SMTP(second.host, second.ports["smtp"], timeout=30) as smtp:
        smtp.send_message(msg)
    with imaplib.IMAP4(first.host, first.ports["imap"], timeout=30) as imap:
        imap.login(login, password)
        imap.select("INBOX")
        _status, data = imap.uid("SEARCH", None, "ALL")
        assert [int(u) for u in data[0].split()] == [1, 2]
