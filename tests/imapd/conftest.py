"""Fixtures for the IMAP tests: real clients (imaplib, imapclient) against ``kantoor serve`` on 127.0.0.1.

``server`` is the shared process (plaintext allowed on loopback, like the README).
``policy_server`` is a second process for this folder with a stricter configuration:
no plaintext login on loopback, small message and quota limits, a plan without IMAP,
and a short idle timeout.
"""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from harness import ServerProcess, launch_server
from imapd.imap_raw import RawSession

POLICY_TOML = """
[auth]
allow_plaintext_on_loopback = false

[limits]
max_message_bytes = 20000
imap_idle_timeout_seconds = 5

[plans.nomail]
title = "No mail clients"
imap = false
smtp = false

[plans.tiny]
title = "Tiny"
imap = true
mail_bytes = 3000
"""


def tls_context(server: Any) -> ssl.SSLContext:
    """A client context that trusts the server's self-signed certificate."""
    return ssl.create_default_context(cafile=str(server.certificate))


@dataclass
class PolicyServer:
    process: ServerProcess

    def __getattr__(self, name: str) -> Any:
        return getattr(self.process, name)

    def make_user(self, login: str, plan: str) -> tuple[str, str]:
        return self.process.make_user(login, plan=plan)


@pytest.fixture(scope="module")
def policy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyServer]:
    process = launch_server(tmp_path_factory.mktemp("imap-policy") / "data", config=POLICY_TOML)
    try:
        yield PolicyServer(process)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def user(server: Any) -> tuple[str, str]:
    """One account per test module (creating one runs the CLI: seconds); tests must not depend on its mail."""
    return server.make_user()


@pytest.fixture
def fresh_user(server: Any) -> tuple[str, str]:
    """An account with empty mailboxes, for tests that count messages."""
    return server.make_user()


@pytest.fixture
def connect(server: Any) -> Iterator[Callable[..., imaplib.IMAP4]]:
    """``connect(user=None)``: a plain imaplib client on 127.0.0.1, logged in when a user is given."""
    opened: list[imaplib.IMAP4] = []

    def factory(credentials: tuple[str, str] | None = None) -> imaplib.IMAP4:
        client = imaplib.IMAP4(server.host, server.ports["imap"], timeout=30)
        opened.append(client)
        if credentials is not None:
            client.login(*credentials)
        return client

    yield factory
    for client in opened:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the test may have closed it already
            pass


MESSAGE = (
    b"From: Alice Example <alice@example.org>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: Quarterly report\r\n"
    b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <report-1@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=\"BOUND\"\r\n"
    b"\r\n"
    b"--BOUND\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"The numbers are up.\r\n"
    b"--BOUND\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>The numbers are up.</p>\r\n"
    b"--BOUND--\r\n"
)


@pytest.fixture
def message() -> bytes:
    return MESSAGE


@pytest.fixture
def trusting() -> Callable[[Any], ssl.SSLContext]:
    """``trusting(server)``: an SSL context that verifies the server's self-signed certificate."""
    return tls_context


@pytest.fixture
def raw(server: Any) -> Iterator[Callable[..., RawSession]]:
    """``raw(credentials=None)``: a :class:`RawSession`, logged in when credentials are given."""
    opened: list[RawSession] = []

    def factory(credentials: tuple[str, str] | None = None) -> RawSession:
        session = RawSession(server)
        opened.append(session)
        if credentials is not None:
            reply = session.command(f'LOGIN "{credentials[0]}" "{credentials[1]}"')
            assert reply[-1].split()[1] == b"OK", reply
        return session

    yield factory
    for session in opened:
        session.close()


@pytest.fixture
def folder(connect: Callable[..., imaplib.IMAP4], user: tuple[str, str]) -> str:
    """A new empty mailbox of the module's ``user`` (cheaper than a new account per test)."""
    import secrets

    name = f"T{secrets.token_hex(4)}"
    client = connect(user)
    assert client.create(name)[0] == "OK"
    return name
