"""Fixtures for the SMTP tests: connected clients, test messages, and reading an INBOX back
over IMAP, against the real ``server`` (``kantoor serve``) on 127.0.0.1."""

from __future__ import annotations

import imaplib
import re
import secrets
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


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

