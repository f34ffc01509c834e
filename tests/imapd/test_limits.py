"""Bad input and limits: RFC 3501 BAD replies, RFC 7889-style [TOOBIG], RFC 5530 [OVERQUOTA], idle autologout."""

from __future__ import annotations

import imaplib
import socket
import time

import pytest


def raw_session(server) -> tuple[socket.socket, object]:  # type: ignore[no-untyped-def]
    sock = socket.create_connection((server.host, server.ports["imap"]), timeout=30)
    stream = sock.makefile("rb")
    assert stream.readline().startswith(b"* OK")
    return sock, stream


def test_garbage_lines_get_bad_and_the_session_continues(server, user) -> None:  # type: ignore[no-untyped-def]
    sock, stream = raw_session(server)
    with sock:
        sock.sendall(b"\xff\xfe\x00 garbage\r\n")
        assert stream.readline().startswith(b"* BAD")
        sock.sendall(b"lonely\r\n")
        assert stream.readline().startswith(b"lonely BAD")
        sock.sendall(b"a1 FROBNICATE now\r\n")
        assert stream.readline().startswith(b"a1 BAD")
        sock.sendall(b"a2 SELECT INBOX\r\n")  # not allowed before login
        assert stream.readline().startswith(b"a2 BAD")
        sock.sendall(b"a3 LOGIN \"unterminated\r\n")
        assert stream.readline().split()[1] in (b"BAD", b"NO")
        sock.sendall(b"a4 NOOP\r\n")
        assert stream.readline().startswith(b"a4 OK")


def test_bad_arguments_after_login_get_bad(connect, user) -> None:  # type: ignore[no-untyped-def]
    client = connect(user)
    client.select("INBOX")
    for command, args in (("FETCH", ("x:y", "(FLAGS)")), ("FETCH", ("1", "(NOSUCHITEM)")),
                          ("STORE", ("1", "+FLAGS", "(\\Seen")), ("UID", ("FROB", "1"))):
        with pytest.raises(imaplib.IMAP4.error):
            client._simple_command(command, *args)
    assert client.noop()[0] == "OK"


def test_overlong_line_closes_the_connection(server) -> None:  # type: ignore[no-untyped-def]
    sock, stream = raw_session(server)
    with sock:
        sock.sendall(b"a1 NOOP " + b"x" * 100_000 + b"\r\n")
        assert stream.readline().startswith(b"* BYE")


def _policy_client(policy_server, trusting, login: str, plan: str = "standard") -> imaplib.IMAP4_SSL:  # type: ignore[no-untyped-def]
    credentials = policy_server.make_user(login, plan)
    client = imaplib.IMAP4_SSL(policy_server.host, policy_server.ports["imaps"],
                               ssl_context=trusting(policy_server), timeout=30)
    client.login(*credentials)
    return client


def test_append_over_the_size_limit_is_refused_before_the_literal(policy_server, trusting) -> None:  # type: ignore[no-untyped-def]
    client = _policy_client(policy_server, trusting, "big@localhost")
    try:
        big = b"Subject: big\r\n\r\n" + b"x" * 30_000
        typ, data = client.append("INBOX", None, None, big)
        assert typ == "NO" and b"[TOOBIG]" in data[0], data
        # The server never asked for the literal, so the session is in step.
        assert client.select("INBOX") == ("OK", [b"0"])
    finally:
        client.logout()


def test_append_over_quota_is_refused_with_overquota(policy_server, trusting) -> None:  # type: ignore[no-untyped-def]
    client = _policy_client(policy_server, trusting, "small@localhost", plan="tiny")
    try:
        two_kb = b"Subject: fits\r\n\r\n" + b"y" * 2000
        assert client.append("INBOX", None, None, two_kb)[0] == "OK"
        typ, data = client.append("INBOX", None, None, two_kb)
        assert typ == "NO" and b"[OVERQUOTA]" in data[0]
        assert client.select("INBOX") == ("OK", [b"1"])
    finally:
        client.logout()


def test_idle_connection_is_logged_out(policy_server) -> None:  # type: ignore[no-untyped-def]
    # policy_server's imap_idle_timeout_seconds is 5.
    sock = socket.create_connection((policy_server.host, policy_server.ports["imap"]), timeout=30)
    with sock:
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"* OK")
        started = time.monotonic()
        assert stream.readline().startswith(b"* BYE")
        assert stream.readline() == b""
        assert 3 < time.monotonic() - started < 20


def test_mailbox_names_must_be_canonical_modified_utf7_rfc3501_5_1_3(raw, user) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    for bad in ("&Jjo", "&AGE-", "Caf\u00e9"):  # unterminated shift, ASCII in base64, raw 8-bit
        data = b'CREATE "' + bad.encode("utf-8") + b'"'
        reply = session.command(data)
        assert reply[-1].split()[1] in (b"NO", b"BAD"), (bad, reply)
    assert session.command('CREATE "Caf&AOk-/&ZeVnLIqe-"')[-1].split()[1] == b"OK"
    listed = session.command('LIST "" "Caf*"')
    assert b'"Caf&AOk-"' in listed[0] and b'"Caf&AOk-/&ZeVnLIqe-"' in listed[1]
    assert session.command('RENAME "Caf&AOk-" "&AGE-"')[-1].split()[1] == b"NO"
