"""A lean IMAP client for benchmarks: send one command, read every response up to the tagged one.

imaplib parses each response line with regular expressions and keeps them in lists; on a
50,000-line FETCH that client work would be a large, equal share of both servers' times and
squeeze the ratios toward 1. This reader only splits lines and skips literals
(``{n}`` / ``{n+}``), so the time measured is mostly the server's. Loopback only, every
read bounded by the socket timeout.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class ImapError(RuntimeError):
    pass


@dataclass
class Reply:
    tagged: bytes
    untagged: list[bytes] = field(default_factory=list)
    seconds: float = 0.0
    nbytes: int = 0

    @property
    def ok(self) -> bool:
        return self.tagged.split(b" ", 2)[1:2] == [b"OK"]


class Wire:
    def __init__(self, port: int, timeout: float = 300) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.counter = 0
        self.received = 0
        greeting = self._response()
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"greeting: {greeting[:200]!r}")
        self.capabilities = self.command("CAPABILITY").untagged[0].upper().split()

    # -- reading -----------------------------------------------------------------------
    def _fill(self) -> None:
        if self.pos > 1 << 20:  # drop what was consumed, now and then (not per line)
            del self.buf[: self.pos]
            self.pos = 0
        data = self.sock.recv(1 << 18)
        if not data:
            raise ConnectionError("server closed the connection")
        self.received += len(data)
        self.buf += data

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n", self.pos)) < 0:
            self._fill()
        line = bytes(self.buf[self.pos: end + 2])
        self.pos = end + 2
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            self._fill()
        data = bytes(self.buf[self.pos: self.pos + n])
        self.pos += n
        return data

    def _response(self) -> bytes:
        """One response with its literals inline."""
        parts = [self._line()]
        while m := _LITERAL.search(parts[-1]):
            parts.append(self._exact(int(m.group(1))))
            parts.append(self._line())
        return b"".join(parts)

    # -- commands ----------------------------------------------------------------------
    def _tag(self) -> bytes:
        self.counter += 1
        return b"b%d" % self.counter

    def _finish(self, tag: bytes, started: float, received: int) -> Reply:
        untagged = []
        while True:
            line = self._response()
            if line.startswith(tag + b" "):
                reply = Reply(line, untagged, time.perf_counter() - started, self.received - received)
                return reply
            if line.startswith(b"* "):
                untagged.append(line[2:])

    def command(self, text: str | bytes, check: bool = True) -> Reply:
        tag = self._tag()
        data = text.encode() if isinstance(text, str) else text
        received = self.received
        started = time.perf_counter()
        self.sock.sendall(tag + b" " + data + b"\r\n")
        reply = self._finish(tag, started, received)
        if check and not reply.ok:
            raise ImapError(f"{data[:80]!r}: {reply.tagged[:300]!r}")
        return reply

    def append(self, mailbox: str, message: bytes, flags: str = "") -> Reply:
        """APPEND with LITERAL+ when offered (one round trip), else a synchronizing literal."""
        tag = self._tag()
        plus = b"LITERAL+" in self.capabilities
        head = tag + f" APPEND {mailbox} ({flags}) {{{len(message)}{'+' if plus else ''}}}\r\n".encode()
        received = self.received
        started = time.perf_counter()
        if plus:
            self.sock.sendall(head + message + b"\r\n")
        else:
            self.sock.sendall(head)
            line = self._response()
            if not line.startswith(b"+"):
                raise ImapError(f"APPEND refused: {line[:200]!r}")
            self.sock.sendall(message + b"\r\n")
        reply = self._finish(tag, started, received)
        if not reply.ok:
            raise ImapError(f"APPEND: {reply.tagged[:300]!r}")
        return reply

    def login(self, user: str, password: str) -> None:
        self.command(f'LOGIN "{user}" "{password}"')
        self.capabilities = self.command("CAPABILITY").untagged[0].upper().split()  # may grow after login

    def close(self) -> None:
        try:
            self.command("LOGOUT", check=False)
        except OSError:
            pass
        self.sock.close()


def count(reply: Reply, word: bytes) -> int:
    """How many untagged responses have ``word`` as their second token (``* 5 FETCH …``)."""
    return sum(1 for line in reply.untagged if line.split(b" ", 2)[1:2] == [word])


def exists(reply: Reply) -> int:
    for line in reply.untagged:
        parts = line.split()
        if len(parts) >= 2 and parts[1] == b"EXISTS":
            return int(parts[0])
    return -1


def search_hits(reply: Reply) -> list[int]:
    hits: list[int] = []
    for line in reply.untagged:
        if line.startswith(b"SEARCH"):
            hits.extend(int(x) for x in line.split()[1:] if x.isdigit())
    return hits
