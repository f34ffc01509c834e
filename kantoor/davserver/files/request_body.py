"""Request bodies that tell a dropped connection from the end of the body.

(The server's own WSGI host, :mod:`kantoor.davserver.wsgi_host`, already reads bodies
this way; this module keeps a2wsgi's ``WSGIMiddleware`` safe too, as the benchmark and
embedders may run the drive app under it.)

a2wsgi's ``wsgi.input`` answers a client that went away mid-upload (ASGI
``http.disconnect``) the way it answers the real end of a body: with ``b""``.
wsgidav reads a PUT body until ``b""``, so an interrupted upload (a chunked one
has no length to compare with) would be stored truncated, replacing the previous
version. :class:`UploadBody` reads the same ASGI messages but raises
:class:`ClientDisconnected` instead; the Store then never commits the write and
the blob store removes its temporary file (RFC 9112 §7.1: an incomplete chunked
body is not a message).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from kantoor.davserver.wsgi_host import ClientDisconnected, RequestBody

_READ_ALL = -1  # read()/readline() without a size: everything up to the end of the body


class UploadBody:
    """A ``wsgi.input`` on a2wsgi's ASGI ``receive``, raising :class:`ClientDisconnected` on a cut body."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Callable[[], Any], expected: int | None) -> None:
        self.loop = loop
        self.receive = receive
        self.expected = expected  # Content-Length, if the client sent one
        self.received = 0
        self.buffer = bytearray()
        self.more = True

    def _pull(self) -> None:
        message = asyncio.run_coroutine_threadsafe(self.receive(), loop=self.loop).result()
        if message.get("type") == "http.disconnect":
            self.more = False
            raise ClientDisconnected("the client closed the connection during the request body")
        chunk = message.get("body", b"")
        self.received += len(chunk)
        self.buffer.extend(chunk)
        self.more = bool(message.get("more_body", False))
        if not self.more and self.expected is not None and self.received < self.expected:
            raise ClientDisconnected(f"the body ended after {self.received} of {self.expected} bytes")

    def read(self, size: int = _READ_ALL) -> bytes:
        while self.more and (size < 0 or len(self.buffer) < size):
            self._pull()
        if size < 0 or size >= len(self.buffer):
            data = bytes(self.buffer)
            self.buffer.clear()
        else:
            data = bytes(self.buffer[:size])
            del self.buffer[:size]
        return data

    def readline(self, limit: int = _READ_ALL) -> bytes:
        while self.more and b"\n" not in self.buffer and (limit < 0 or len(self.buffer) < limit):
            self._pull()
        end = self.buffer.find(b"\n")
        end = len(self.buffer) if end < 0 else end + 1
        if limit >= 0:
            end = min(end, limit)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def guard_upload_body(environ: dict) -> None:
    """Swap a2wsgi's ``wsgi.input`` of a request with a body for an :class:`UploadBody` on the same messages."""
    body = environ.get("wsgi.input")
    if isinstance(body, RequestBody):
        return  # the server's own host: already raises ClientDisconnected
    loop, receive = getattr(body, "loop", None), getattr(body, "receive", None)
    if loop is None or receive is None or getattr(body, "buffer", b""):
        return  # not a2wsgi's untouched Body (e.g. a test calling the WSGI app directly): leave it
    length = (environ.get("CONTENT_LENGTH") or "").strip()
    expected = int(length) if length.isdigit() else None
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if expected or chunked:
        environ["wsgi.input"] = UploadBody(loop, receive, expected)
