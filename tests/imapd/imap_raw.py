"""A line-level IMAP test client, for exact responses (untagged codes, pipelining, non-synchronizing literals)."""

from __future__ import annotations

import re
import socket
from typing import Any


class RawSession:
    """A line-level IMAP client for checking exact responses (untagged codes, pipelining, literals)."""

    def __init__(self, server: Any) -> None:
        self.sock = socket.create_connection((server.host, server.ports["imap"]), timeout=20)
        self.stream = self.sock.makefile("rb")
        self.greeting = self.stream.readline()
        self.counter = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, tag: bytes) -> list[bytes]:
        """Lines (CRLF stripped; literals inline) up to and including the tagged reply for ``tag``."""
        lines: list[bytes] = []
        for _ in range(100_000):
            line = self.stream.readline()
            if not line:
                raise ConnectionError("server closed the connection; got " + repr(lines))
            literal = re.search(rb"\{(\d+)\}\r\n\Z", line)
            if literal:
                line = line[:-2] + self.stream.read(int(literal.group(1))) + self.stream.readline()
            lines.append(line.rstrip(b"\r\n"))
            if line.startswith(tag + b" "):
                return lines
        raise AssertionError("no tagged reply")

    def command(self, text: bytes | str) -> list[bytes]:
        self.counter += 1
        tag = b"c%d" % self.counter
        self.send(tag + b" " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.read_until(tag)

    def close(self) -> None:
        self.sock.close()
