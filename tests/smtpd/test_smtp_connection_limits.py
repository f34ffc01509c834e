"""Open SMTP sessions per client address (``limits.smtp_connections_per_ip``): one over the limit is
refused with 421 4.7.0 in place of the greeting (RFC 5321 section 3.8) and closed; MX and submission
sessions count together, a STARTTLS upgrade is still one session, and a closed one frees its place."""

from __future__ import annotations

import smtplib
import socket
import time
from typing import Any

import pytest

from kantoor.smtpd.connection_limits import ConnectionCounter, client_key


@pytest.fixture
def limited(start_server: Any) -> Any:
    return start_server(KANTOOR_LIMITS_SMTP_CONNECTIONS_PER_IP="3")


def _greeting(srv: Any, port: str = "smtp") -> tuple[socket.socket, bytes]:
    sock = socket.create_connection((srv.host, srv.ports[port]), timeout=10)
    return sock, sock.makefile("rb").readline()


def _admitted_again(srv: Any) -> None:
    """A new session is served once the server has seen that one of the held ones closed (a moment later)."""
    for _ in range(50):
        try:
            with smtplib.SMTP(srv.host, srv.ports["smtp"], timeout=10) as client:
                assert client.noop()[0] == 250
                return
        except smtplib.SMTPConnectError:
            time.sleep(0.1)
    pytest.fail("the freed place was never given to a new session")


def test_a_connection_over_the_per_address_limit_gets_421_4_7_0_and_is_closed_rfc5321_section_3_8(  # type: ignore[no-untyped-def]
        limited) -> None:
    held = [_greeting(limited, port) for port in ("smtp", "submission", "smtp")]
    try:
        assert all(line.startswith(b"220 ") for _, line in held)
        for port in ("smtp", "submission"):  # MX and submission sessions count together
            sock, line = _greeting(limited, port)
            with sock:
                assert line.startswith(b"421 4.7.0 ") and b"Too many connections" in line, line
                assert sock.recv(100) == b""  # closed by the server
        held.pop()[0].close()  # one session ends: its place is free again
        _admitted_again(limited)
    finally:
        for sock, _ in held:
            sock.close()


def test_starttls_keeps_one_place_and_gives_it_back(limited, mail_for) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(limited)
    others = [_greeting(limited) for _ in range(2)]
    try:
        client = smtplib.SMTP(limited.host, limited.ports["submission"], timeout=10)
        client.starttls(context=mail.tls_context())
        assert client.ehlo()[0] == 250  # the upgraded session is the third, not a fourth
        sock, line = _greeting(limited)
        with sock:
            assert line.startswith(b"421 "), line
        client.quit()
        _admitted_again(limited)
    finally:
        for sock, _ in others:
            sock.close()


def test_clients_are_counted_by_ipv4_address_and_ipv6_slash_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    counter = ConnectionCounter(per_client=2)
    first, second = counter.admit("2001:db8::1"), counter.admit("2001:db8::2")
    assert first is not None and second is not None and counter.admit("2001:db8::3") is None
    assert counter.admit("192.0.2.1") is not None  # another client is not affected
    counter.release(first)
    assert counter.open_from("2001:db8::99") == 1 and counter.admit("2001:db8::3") is not None
