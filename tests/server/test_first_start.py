"""Issue 2 acceptance, end to end: one `kantoor serve` answers every protocol, plain and TLS."""

from __future__ import annotations

import base64
import http.client
import imaplib
import smtplib
import ssl
import time
from email.message import EmailMessage

import pytest


def _tls_context(server) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    """Trust exactly the self-signed certificate the server generated at first start."""
    context = ssl.create_default_context(cafile=str(server.certificate))
    context.check_hostname = False  # the certificate names "localhost"; tests dial 127.0.0.1
    return context


def _basic(login: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{login}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Depth": "1", "Content-Type": "application/xml"}


def test_first_start_prints_admin_login_and_every_service(server) -> None:  # type: ignore[no-untyped-def]
    banner = "".join(server.output)
    assert server.admin_login == "admin@localhost" and len(server.admin_password) >= 16
    for word in ("/dav/", "/files/", "IMAP", "SMTP", "Submission", "self-signed"):
        assert word in banner
    assert set(server.ports) == {"http", "https", "imap", "imaps", "smtp", "submission", "submissions"}
    assert server.certificate.is_file()


def test_imap_login_and_list_inbox(server) -> None:  # type: ignore[no-untyped-def]
    with imaplib.IMAP4(server.host, server.ports["imap"]) as imap:
        imap.login(server.admin_login, server.admin_password)
        status, lines = imap.list()
        assert status == "OK"
        assert any(b"INBOX" in line for line in lines)


def test_smtp_delivery_is_fetched_by_a_second_imap_session(server) -> None:  # type: ignore[no-untyped-def]
    msg = EmailMessage()
    msg["From"] = "someone@example.net"
    msg["To"] = server.admin_login
    msg["Subject"] = "foundation delivery check"
    msg.set_content("Hello from the outside.\n")
    with smtplib.SMTP(server.host, server.ports["smtp"], timeout=30) as smtp:
        smtp.send_message(msg)
    with imaplib.IMAP4(server.host, server.ports["imap"]) as imap:
        imap.login(server.admin_login, server.admin_password)
        imap.select("INBOX")
        status, data = imap.search(None, "ALL")
        assert status == "OK"
        found = False
        for num in data[0].split():
            status, parts = imap.fetch(num, "(BODY.PEEK[])")
            if b"foundation delivery check" in parts[0][1]:
                found = b"Hello from the outside." in parts[0][1]
        assert found


@pytest.mark.parametrize("mount", ["/dav/", "/files/"])
@pytest.mark.parametrize("tls", [False, True])
def test_propfind_answers_207(server, mount: str, tls: bool) -> None:  # type: ignore[no-untyped-def]
    if tls:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            server.host, server.ports["https"], context=_tls_context(server), timeout=30)
    else:
        conn = http.client.HTTPConnection(server.host, server.ports["http"], timeout=30)
    conn.request("PROPFIND", mount, body=b"", headers=_basic(server.admin_login, server.admin_password))
    response = conn.getresponse()
    body = response.read()
    assert response.status == 207, body[:500]
    assert b"multistatus" in body
    conn.close()


def test_imap_over_implicit_tls_and_starttls(server) -> None:  # type: ignore[no-untyped-def]
    with imaplib.IMAP4_SSL(server.host, server.ports["imaps"], ssl_context=_tls_context(server)) as imap:
        imap.login(server.admin_login, server.admin_password)
        assert imap.select("INBOX")[0] == "OK"
    with imaplib.IMAP4(server.host, server.ports["imap"]) as imap:
        imap.starttls(ssl_context=_tls_context(server))
        imap.login(server.admin_login, server.admin_password)
        assert imap.select("INBOX")[0] == "OK"


def test_smtp_over_starttls_and_implicit_tls_submission(server) -> None:  # type: ignore[no-untyped-def]
    msg = EmailMessage()
    msg["From"] = server.admin_login
    msg["To"] = server.admin_login
    msg["Subject"] = f"tls check {time.time()}"
    msg.set_content("over TLS\n")
    with smtplib.SMTP(server.host, server.ports["smtp"], timeout=30) as smtp:
        smtp.starttls(context=_tls_context(server))
        smtp.send_message(msg)
    with smtplib.SMTP(server.host, server.ports["submission"], timeout=30) as smtp:
        smtp.starttls(context=_tls_context(server))
        smtp.login(server.admin_login, server.admin_password)
        smtp.send_message(msg)
    with smtplib.SMTP_SSL(server.host, server.ports["submissions"], context=_tls_context(server),
                          timeout=30) as smtp:
        smtp.login(server.admin_login, server.admin_password)
        smtp.send_message(msg)
    with imaplib.IMAP4(server.host, server.ports["imap"]) as imap:
        imap.login(server.admin_login, server.admin_password)
        imap.select("INBOX", readonly=True)
        _status, data = imap.search(None, "SUBJECT", f'"{msg["Subject"]}"')
        assert len(data[0].split()) == 3


def test_well_known_redirects(server) -> None:  # type: ignore[no-untyped-def]
    for path in ("/.well-known/caldav", "/.well-known/carddav"):
        conn = http.client.HTTPConnection(server.host, server.ports["http"], timeout=30)
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status in (301, 308) and response.getheader("Location").endswith("/dav/")
        conn.close()


def test_sigterm_stops_everything_cleanly(start_server) -> None:  # type: ignore[no-untyped-def]
    proc = start_server()
    with imaplib.IMAP4(proc.host, proc.ports["imap"]) as imap:
        imap.login(proc.admin_login, proc.admin_password)
    assert proc.stop() == 0
    assert "Traceback" not in "".join(proc.output)
