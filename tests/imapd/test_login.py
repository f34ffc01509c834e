"""RFC 3501 6.1-6.2 (CAPABILITY, LOGIN, AUTHENTICATE), RFC 4616 PLAIN, RFC 4959 SASL-IR, RFC 5530 codes."""

from __future__ import annotations

import base64
import imaplib

import pytest


def test_capability_on_loopback_offers_starttls_and_plain(connect) -> None:  # type: ignore[no-untyped-def]
    client = connect()
    caps = client.capabilities
    assert "IMAP4REV1" in caps
    assert "STARTTLS" in caps
    assert "AUTH=PLAIN" in caps
    assert "LOGINDISABLED" not in caps  # plaintext is allowed on loopback by default


def test_login_then_list_shows_inbox_and_special_use(connect, user) -> None:  # type: ignore[no-untyped-def]
    client = connect(user)
    typ, lines = client.list()
    assert typ == "OK"
    listing = b"\n".join(lines)
    assert b'"INBOX"' in listing
    assert b'(\\HasNoChildren \\Sent) "/" "Sent"' in listing
    assert b"\\Trash" in listing
    typ, lines = client.lsub('""', "INBOX")
    assert typ == "OK" and b'"INBOX"' in lines[0]


def test_wrong_password_is_refused_with_authenticationfailed(connect, user) -> None:  # type: ignore[no-untyped-def]
    client = connect()
    with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED"):
        client.login(user[0], "not-the-password")
    # The session is still usable after a failed login.
    client.login(*user)
    assert client.select("INBOX")[0] == "OK"


def test_unknown_login_is_refused_like_a_wrong_password(connect) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED"):
        connect().login("nobody@localhost", "whatever-password")


def test_authenticate_plain_with_continuation(connect, user) -> None:  # type: ignore[no-untyped-def]
    client = connect()
    typ, _ = client.authenticate("PLAIN", lambda _challenge: f"\0{user[0]}\0{user[1]}".encode())
    assert typ == "OK"
    assert client.select("INBOX")[0] == "OK"


def test_authenticate_plain_with_initial_response(connect, user) -> None:  # type: ignore[no-untyped-def]
    client = connect()
    assert "SASL-IR" in client.capabilities
    token = base64.b64encode(f"\0{user[0]}\0{user[1]}".encode()).decode()
    typ, data = client._simple_command("AUTHENTICATE", "PLAIN", token)
    assert typ == "OK", data
    client.state = "AUTH"
    assert client.select("INBOX")[0] == "OK"


def test_authenticate_plain_for_another_identity_is_refused(connect, user) -> None:  # type: ignore[no-untyped-def]
    client = connect()
    with pytest.raises(imaplib.IMAP4.error, match=r"AUTHORIZATIONFAILED"):
        client.authenticate("PLAIN", lambda _c: f"admin@localhost\0{user[0]}\0{user[1]}".encode())


def test_plan_without_imap_is_refused_with_a_reason(trusting, policy_server) -> None:  # type: ignore[no-untyped-def]
    login, password = policy_server.make_user("gated@localhost", "nomail")
    client = imaplib.IMAP4_SSL(policy_server.host, policy_server.ports["imaps"], ssl_context=trusting(policy_server))
    try:
        with pytest.raises(imaplib.IMAP4.error) as refused:
            client.login(login, password)
        assert "[NOPERM]" in str(refused.value)
        assert "plan does not include IMAP" in str(refused.value)
    finally:
        client.shutdown()


def test_logindisabled_before_starttls_when_loopback_plaintext_is_off(trusting, policy_server) -> None:  # type: ignore[no-untyped-def]
    login, password = policy_server.make_user("careful@localhost", "standard")
    client = imaplib.IMAP4(policy_server.host, policy_server.ports["imap"], timeout=30)
    try:
        assert "LOGINDISABLED" in client.capabilities
        assert "STARTTLS" in client.capabilities
        assert "AUTH=PLAIN" not in client.capabilities
        with pytest.raises(imaplib.IMAP4.error, match=r"PRIVACYREQUIRED"):
            client.login(login, password)
        typ, data = client._simple_command("AUTHENTICATE", "PLAIN", "AGZvbwBiYXI=")
        assert typ == "NO" and b"PRIVACYREQUIRED" in data[0]
        client.starttls(ssl_context=trusting(policy_server))
        assert "LOGINDISABLED" not in client.capabilities
        assert "STARTTLS" not in client.capabilities
        assert client.login(login, password)[0] == "OK"
    finally:
        client.logout()
