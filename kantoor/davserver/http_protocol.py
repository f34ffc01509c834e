"""The HTTP/1.1 protocol the listeners use: uvicorn's httptools parser with a bound on the request head.

httptools (llhttp) parses large uploads about a quarter faster than h11
(bench/webdav.py), but uvicorn sets it no limit on the request line and headers:
httptools collects a header's name and value until it is complete, so one 50 MB
header is held whole in memory. :class:`BoundedHeadProtocol` counts the bytes of
each request head as they arrive and answers ``431 Request Header Fields Too
Large`` (RFC 6585 §5), closing the connection, once a head passes
:data:`MAX_HEAD_BYTES` without being complete; nothing more of it is parsed.

It also lets a request body run further ahead of the app (:data:`BODY_HIGH_WATER`
instead of uvicorn's 64 KiB) before reading from the socket pauses: a worker thread
hashing and writing a 1 MiB piece of an upload no longer stops the client every
64 KiB (bench/webdav.py: the event loop sat idle 70% of a large PUT). Everything
else (keep-alive timeout, pipelining) is uvicorn's.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Request line + headers; the same bound h11 was given (h11_max_incomplete_event_size).
MAX_HEAD_BYTES = 64 * 1024
# Request body bytes buffered per connection before reading pauses until the app takes them.
BODY_HIGH_WATER = 2 * 1024 * 1024

_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"content-length: 33\r\n"
        b"connection: close\r\n\r\n"
        b"Request header fields too large\r\n")


class _BodyPieces:
    """A request body's pieces as the parser hands them over, joined once when the app receives them
    (uvicorn's bytearray copied every byte in, then out again: one copy of each upload byte less)."""

    __slots__ = ("pieces", "size")

    def __init__(self, start: bytes | bytearray = b"") -> None:
        self.pieces: list[bytes] = [bytes(start)] if start else []
        self.size = len(start)

    def __iadd__(self, piece: bytes) -> _BodyPieces:
        self.pieces.append(piece)
        self.size += len(piece)
        return self

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        if len(self.pieces) == 1:
            return bytes(self.pieces[0])  # bytes as the parser gave them: no copy
        return b"".join(self.pieces)


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head over ``max_head_bytes`` with 431."""

    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # bytes of the current request's head seen so far
        self._in_body = False  # the current request's head is complete
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        while data:
            if self._in_body:
                super().data_received(data)
                return
            # In a head: feed no more than its remaining allowance, so the parser never
            # holds more than that; the rest follows once the head is complete.
            room = self.max_head_bytes - self._head_bytes
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            if piece:
                super().data_received(piece)
                if self.transport.is_closing():
                    return
            if data and not self._in_body:
                self._refuse()
                return

    def _refuse(self) -> None:
        self._refused = True
        self.logger.info("request head over %d bytes refused with 431", self.max_head_bytes)
        self.transport.write(_431)
        self.transport.close()

    def on_body(self, body: bytes) -> None:
        # uvicorn's on_body (which collects into a bytearray) with a higher mark, collecting
        # into _BodyPieces instead: uvicorn's receive() turns what was collected into bytes.
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        if type(cycle.body) is not _BodyPieces:
            cycle.body = _BodyPieces(cycle.body)
        cycle.body += body
        if len(cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_headers_complete(self) -> None:
        self._in_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next bytes start the next request's head.
        self._in_body = False
        self._head_bytes = 0


__all__ = ["BODY_HIGH_WATER", "MAX_HEAD_BYTES", "BoundedHeadProtocol"]
