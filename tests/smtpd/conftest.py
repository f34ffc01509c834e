"""Fixtures for the SMTP tests: connected clients, test messages, and reading an INBOX back
over IMAP, against the real ``server`` (``kantoor serve``) on 127.0.0.1."""

from __future__ import annotations

import imaplib
import re
import secrets
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def unique(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@dataclass
class MailTools:
    server: Any

    # -- clients
    def tls_context(self) -> ssl.SSLContext:
        """A client context that trusts the server's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.server.certificate))

    def mx(self) -> smtplib.SMTP:
        client = smtplib.SMTP(self.server.host, self.server.ports["smtp"], timeout=30)
        client.ehlo("mx.example.org")
        return client

    def submission(self) -> smtplib.SMTP:
        client = smtplib.SMTP(self.server.host, self.server.ports["submission"], timeout=30)
        client.ehlo("laptop.example.org")
        return client

    def submissions(self) -> smtplib.SMTP_SSL:
        client = smtplib.SMTP_SSL(self.server.host, self.server.ports["submissions"], context=self.tls_context(),
                                  timeout=30)
        client.ehlo("laptop.example.org")
        return client

    # -- messages
    unique = staticmethod(unique)

    @staticmethod
    def compose(subject: str, body: str = "Hello.", sender: str = "someone@example.org") -> bytes:
        return (f"From: {sender}\r\nTo: you\r\nSubject: {subject}\r\nMessage-ID: <{unique()}@example.org>\r\n"
                f"\r\n{body}\r\n").encode()

    @staticmethod
    def subjects(messages: list[bytes]) -> list[str]:
        found = []
        for raw in messages:
            m = re.search(rb"^Subject: (.*?)\r?$", raw, re.MULTILINE)
            found.append(m.group(1).decode() if m else "")
        return found

    def inbox(self, login: str, password: str) -> list[bytes]:
        """Every message in ``login``'s INBOX (raw bytes, UID order), read over IMAP."""
        with imaplib.IMAP4(self.server.host, self.server.ports["imap"], timeout=30) as imap:
            imap.login(login, password)
            imap.select("INBOX", readonly=True)
            typ, data = imap.uid("SEARCH", None, "ALL")
            assert typ == "OK"
            messages = []
            for uid in data[0].split():
                typ, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                assert typ == "OK"
                messages.extend(p[1] for p in parts if isinstance(p, tuple))
            return messages

    def received(self, login: str, password: str, subject: str) -> bytes:
        """The one message in the INBOX whose Subject is ``subject``."""
        found = [m for m in self.inbox(login, password) if f"Subject: {subject}\r\n".encode() in m]
        assert len(found) == 1, f"{len(found)} messages with subject {subject}"
        return found[0]

    # -- set-up the CLI does not offer
    def add_alias(self, login: str, alias: str) -> None:
        from kantoor.config import load_settings
        from kantoor.core import open_core

        core = open_core(load_settings(path=None, environ={"KANTOOR_STORAGE_DATA_DIR": str(self.server.data_dir)}),
                         migrate=False)
        try:
            core.store.add_alias(login, alias)
        finally:
            core.close()


@pytest.fixture
def mail(server: Any) -> MailTools:
    """Clients and helpers bound to the shared ``server``."""
    return MailTools(server)


@pytest.fixture
def mail_for() -> Callable[[Any], MailTools]:
    """``mail_for(srv)``: the same helpers for a server from ``start_server``."""
    return MailTools



# ---------------------------------------------------------------- a remote domain's MX
# aiosmtpd in this test process on 127.0.0.1. Replies per recipient are scripted:
# ``script[address]`` is a list of RCPT replies given one per attempt (then the address
# is accepted); ``held`` addresses get 451 for as long as they are in the set. Every
# accepted message is kept in ``received``.
@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool


@dataclass
class FakeMXHandler:
    script: dict[str, list[str]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    received: list[Delivered] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            if address in self.held:
                return "451 4.3.0 Try again later (held by the test)"
            replies = self.script.get(address)
            if replies:
                return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received.append(Delivered(envelope.mail_from or "", list(envelope.rcpt_tos),
                                           envelope.original_content or b"", session.ssl is not None))
        return "250 2.0.0 Accepted by the fake MX"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeMX:
    def __init__(self, **smtp_kwargs: Any) -> None:
        """``smtp_kwargs`` go to aiosmtpd's SMTP (tls_context, require_starttls, authenticator …)."""
        self.handler = FakeMXHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True,
                                     decode_data=False, **smtp_kwargs)

    def start(self) -> FakeMX:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def messages_for(self, address: str) -> list[Delivered]:
        with self.handler.lock:
            return [m for m in self.handler.received if address in m.rcpt_tos]

    def wait_for(self, address: str, count: int = 1, timeout: float = 20) -> list[Delivered]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages_for(address)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{address}: {len(self.messages_for(address))} message(s), expected {count}")


@pytest.fixture(scope="module")
def fake_mx() -> Iterator[FakeMX]:
    mx = FakeMX().start()
    yield mx
    mx.stop()


@pytest.fixture
def make_fake_mx() -> Iterator[Callable[..., FakeMX]]:
    """``make_fake_mx(**smtp_kwargs)``: another fake MX for one test, started, stopped afterwards."""
    started: list[FakeMX] = []

    def make(**smtp_kwargs: Any) -> FakeMX:
        mx = FakeMX(**smtp_kwargs).start()
        started.append(mx)
        return mx

    yield make
    for mx in started:
        mx.stop()
