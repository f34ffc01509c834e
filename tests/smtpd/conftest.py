"""Fixtures for the SMTP tests: connected clients, test messages, and reading an INBOX back
over IMAP, against the real ``server`` (``kantoor serve``) on 127.0.0.1."""

from __future__ import annotations

import asyncio
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

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session
except ImportError:  # Kantoor not installed: the root conftest skips every test and says why
    Controller = SMTP = Envelope = Session = object  # type: ignore[assignment,misc]


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
    mail_options: list[str] = field(default_factory=list)
    rcpt_options: dict[str, list[str]] = field(default_factory=dict)  # recipient → its RCPT parameters


@dataclass
class FakeMXHandler:
    script: dict[str, list[str]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    received: list[Delivered] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hidden: set[str] = field(default_factory=set)  # EHLO keywords not to offer (e.g. "8BITMIME")
    dsn: bool = False  # offer DSN (RFC 3461) and accept its parameters
    data_delay: float = 0.0  # seconds before the reply to the end of the data (a server that scans mail first)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        kept = [r for r in responses if r[4:].split(" ")[0].upper() not in self.hidden]
        if self.dsn:
            kept.insert(-1, "250-DSN")
        last = kept[-1][4:]
        return [f"250-{r[4:]}" for r in kept[:-1]] + [f"250 {last}"]

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            if address in self.held:
                return "451 4.3.0 Try again later (held by the test)"
            replies = self.script.get(address)
            if replies:
                return replies.pop(0)
        envelope.rcpt_tos.append(address)
        per_rcpt = getattr(envelope, "per_rcpt", {})
        per_rcpt[address] = list(rcpt_options)
        envelope.per_rcpt = per_rcpt  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received.append(Delivered(envelope.mail_from or "", list(envelope.rcpt_tos),
                                           envelope.original_content or b"", session.ssl is not None,
                                           list(envelope.mail_options), dict(getattr(envelope, "per_rcpt", {}))))
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        return "250 2.0.0 Accepted by the fake MX"


class FakeSMTP(SMTP):
    """aiosmtpd's SMTP taking the DSN parameters when the handler offers DSN (aiosmtpd refuses them)."""

    def _getparams(self, params):  # type: ignore[no-untyped-def]
        result = super()._getparams(params)
        if result is not None and getattr(self.event_handler, "dsn", False):
            for key in ("RET", "ENVID", "NOTIFY", "ORCPT"):
                result.pop(key, None)
        return result


class FakeController(Controller):
    def factory(self) -> SMTP:
        return FakeSMTP(self.handler, **self.SMTP_kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_on_both() -> int:
    """A port free on 127.0.0.1 and on ::1 (two fake MX hosts with one port number, told apart by address)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET6) as sock:
            try:
                sock.bind(("::1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both loopback addresses")


# ---------------------------------------------------------------- a fake DNS zone
def _udp_and_tcp_on_one_port(tries: int = 50) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same free port on 127.0.0.1 (DNS answers over both). The port the
    kernel picks for one protocol may be taken in the other (a client connection's ephemeral port, say):
    then another is tried."""
    for _ in range(tries):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", tcp.getsockname()[1]))
        except OSError:
            tcp.close()
            udp.close()
            continue
        return udp, tcp
    raise OSError("no port free for both UDP and TCP on 127.0.0.1")


class FakeZone:
    """An authoritative DNS server for test zones on 127.0.0.1 (UDP and TCP), built on dnspython's
    message API. ``records[(name, type)] = [rdata text, …]``; a name in ``servfail`` gets SERVFAIL;
    a name with no record of any type is NXDOMAIN, one with other types gets an empty answer."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.servfail: set[str] = set()
        self.lock = threading.Lock()
        self.udp, self.tcp = _udp_and_tcp_on_one_port()
        self.port = self.udp.getsockname()[1]
        self.tcp.listen(16)
        for target in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    def add(self, name: str, rtype: str, *values: str) -> None:
        with self.lock:
            self.records.setdefault((name.lower().rstrip(".") + ".", rtype.upper()), []).extend(values)

    def answer(self, wire: bytes) -> bytes | None:
        import dns.message
        import dns.rcode
        import dns.rdatatype
        import dns.rrset

        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - not a DNS query: no answer
            return None
        if len(query.question) != 1:
            return None
        response = dns.message.make_response(query)
        response.flags |= 0x0400  # AA: this server is the authority for the fake zone
        question = query.question[0]
        name = question.name.to_text().lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        with self.lock:
            if name.rstrip(".") in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response.to_wire()
            values = self.records.get((name, rtype))
            known = any(n == name for n, _ in self.records)
        if values:
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", rtype, values))
        elif not known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire(max_size=65535)

    def _serve_udp(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            reply = self.answer(data)
            if reply is not None:
                self.udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    size = int.from_bytes(conn.recv(2), "big")
                    data = b""
                    while len(data) < size:
                        chunk = conn.recv(size - len(data))
                        if not chunk:
                            break
                        data += chunk
                    reply = self.answer(data)
                    if reply is not None:
                        conn.sendall(len(reply).to_bytes(2, "big") + reply)
                except OSError:
                    continue

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


@pytest.fixture(scope="module")
def zone() -> Iterator[FakeZone]:
    """A fake DNS zone for this test module; point a server at it with
    ``KANTOOR_DELIVERY_DNS_NAMESERVERS=f"127.0.0.1:{zone.port}"``."""
    fake = FakeZone()
    yield fake
    fake.close()


class FakeMX:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None, hidden: set[str] | None = None,
                 dsn: bool = False, **smtp_kwargs: Any) -> None:
        """``smtp_kwargs`` go to aiosmtpd's SMTP (tls_context, require_starttls, authenticator …);
        ``hidden`` EHLO keywords are not offered; ``dsn`` offers DSN."""
        self.handler = FakeMXHandler(hidden={h.upper() for h in hidden or ()}, dsn=dsn)
        self.port = port or free_port()
        self.controller = FakeController(self.handler, hostname=host, port=self.port, enable_SMTPUTF8=True,
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


@pytest.fixture(scope="module")
def make_module_fake_mx() -> Iterator[Callable[..., FakeMX]]:
    """``make_module_fake_mx(**kwargs)``: a fake MX (see ``FakeMX``) that lives until the module ends."""
    started: list[FakeMX] = []

    def make(**kwargs: Any) -> FakeMX:
        mx = FakeMX(**kwargs).start()
        started.append(mx)
        return mx

    yield make
    for mx in started:
        mx.stop()


@pytest.fixture(scope="module")
def port_on_both_loopbacks() -> int:
    """One port number free on 127.0.0.1 and on ::1, for this module."""
    return free_port_on_both()


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
