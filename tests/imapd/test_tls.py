"""RFC 3501 6.2.1 STARTTLS and RFC 8314 implicit TLS, with a client that verifies the certificate."""

from __future__ import annotations

import imaplib
import socket
import ssl

import pytest


def test_starttls_then_login_and_select(trusting, server, user) -> None:  # type: ignore[no-untyped-def]
    client = imaplib.IMAP4(server.host, server.ports["imap"], timeout=30)
    try:
        typ, _ = client.starttls(ssl_context=trusting(server))
        assert typ == "OK"
        assert isinstance(client.sock, ssl.SSLSocket)
        assert "STARTTLS" not in client.capabilities
        client.login(*user)
        assert client.select("INBOX")[0] == "OK"
    finally:
        client.logout()


def test_implicit_tls_port(trusting, server, user) -> None:  # type: ignore[no-untyped-def]
    client = imaplib.IMAP4_SSL(server.host, server.ports["imaps"], ssl_context=trusting(server), timeout=30)
    try:
        assert "STARTTLS" not in client.capabilities
        assert "AUTH=PLAIN" in client.capabilities
        client.login(*user)
        assert client.list()[0] == "OK"
    finally:
        client.logout()


def test_starttls_twice_is_refused(trusting, server) -> None:  # type: ignore[no-untyped-def]
    client = imaplib.IMAP4(server.host, server.ports["imap"], timeout=30)
    try:
        client.starttls(ssl_context=trusting(server))
        with pytest.raises(imaplib.IMAP4.error, match="already active"):
            client._simple_command("STARTTLS")
    finally:
        client.logout()


def test_commands_pipelined_behind_starttls_are_discarded(trusting, server) -> None:  # type: ignore[no-untyped-def]
    # A man in the middle must not be able to inject plaintext commands that run after TLS starts.
    with socket.create_connection((server.host, server.ports["imap"]), timeout=30) as raw:
        stream = raw.makefile("rb")
        assert stream.readline().startswith(b"* OK")
        raw.sendall(b"a STARTTLS\r\nb CAPABILITY\r\n")
        assert stream.readline().startswith(b"a OK")
        tls = trusting(server).wrap_socket(raw, server_hostname=server.host)
        tls.sendall(b"c NOOP\r\n")
        reply = tls.recv(4096)
        assert reply.startswith(b"c OK"), reply
        tls.close()
