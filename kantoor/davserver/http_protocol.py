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

And it lets an app take a large request body straight off the socket (:class:`RawBody`,
offered as ``scope["extensions"]["kantoor.raw_body"]`` for a Content-Length body on a
plain TCP connection): a worker thread then ``recv_into``'s reused buffers with the GIL
released, instead of the event loop copying every byte three times under the GIL (uvloop's
read, httptools' body piece, the join into an ASGI message) and handing it over piece by
piece: a large PUT was bound by that hand-off at about 40 % of nginx's rate
(bench/webdav.py). Reading from the transport stays paused meanwhile; once the body is
read whole the parser starts afresh at the next request, so keep-alive and pipelining are
unchanged; a body not read to its end closes the connection after the answer.

And it writes a response's head together with the first piece of its body (:class:`_OneWriteCycle`):
uvicorn writes the status line and headers as soon as ``http.response.start`` arrives, then the body,
two sends for every small answer where one does (a 4 KiB GET: bench/webdav.py). Every app here sends
the start and the first body message back to back, so nothing waits on the held head. An answer the
app dated itself gets no second Date field from uvicorn.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from kantoor.davserver.wsgi_host import ClientDisconnected

# Request line + headers; the same bound h11 was given (h11_max_incomplete_event_size).
MAX_HEAD_BYTES = 64 * 1024
# Request body bytes buffered per connection before reading pauses until the app takes them.
BODY_HIGH_WATER = 2 * 1024 * 1024
# The scope extension under which a request's RawBody is offered.
RAW_BODY = "kantoor.raw_body"
# A body taken off the socket that brings nothing for this long is given up (the connection is closed).
BODY_IDLE_TIMEOUT = 300.0

_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"content-length: 33\r\n"
        b"connection: close\r\n\r\n"
        b"Request header fields too large\r\n")


# Up to this size the first body piece is joined to the head (a copy); larger ones go out in one
# vectored write of both instead.
JOIN_BELOW = 64 * 1024


class _HeadWithBody:
    """A cycle's transport from ``http.response.start`` on: holds the first write (the response head)
    until the next one (the first body piece) and sends both at once; later writes pass through.
    Closing sends a held head first, as uvicorn would have sent it."""

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        # b"": the next write is the head; bytes: the head, held; None: everything passes through.
        self._head: bytes | None = b""

    def write(self, data: bytes) -> None:
        head = self._head
        if head is None:
            self._transport.write(data)
        elif not head:
            self._head = data
        else:
            self._head = None
            if len(data) < JOIN_BELOW:
                self._transport.write(head + data)
            else:
                self._transport.writelines((head, data))

    def flush(self) -> None:
        head, self._head = self._head, None
        if head:
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


class _OneWriteCycle(RequestResponseCycle):
    """uvicorn's cycle, writing the response head with the first body piece (see the module docstring)."""

    async def send(self, message: Any) -> None:
        if not self.response_started and message["type"] == "http.response.start" and not self.disconnected:
            self.transport = _HeadWithBody(self.transport)  # type: ignore[assignment]
            if any(name.lower() == b"date" for name, _ in message.get("headers", ())):
                # The app dates its answer itself (wsgidav does): one Date field, not uvicorn's too
                # (RFC 9110 §6.6.1, §5.3: Date is not a list).
                self.default_headers = [h for h in self.default_headers if h[0].lower() != b"date"]
            await super().send(message)
            return
        await super().send(message)
        transport = self.transport
        if type(transport) is _HeadWithBody:
            # The first body message went out with the head, or wrote nothing (a HEAD request's,
            # or an empty piece): the head goes now, and the cycle has its own transport back.
            transport.flush()
            self.transport = transport._transport


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


class RawBody:
    """A request's Content-Length body, which the app may read off the socket itself (:meth:`take`)
    rather than ``receive()`` it; offered in ``scope["extensions"][RAW_BODY]``."""

    def __init__(self, protocol: BoundedHeadProtocol, cycle: RequestResponseCycle, length: int) -> None:
        self.protocol = protocol
        self.cycle = cycle
        self.length = length
        self.taken = False

    def take(self) -> TakenBody | None:
        """On the event loop: the rest of the body, to be read in a worker thread (TakenBody.readinto);
        None if it cannot be taken (the body is complete already, or the request is over)."""
        protocol, cycle = self.protocol, self.cycle
        transport = protocol.transport
        if (self.taken or protocol.cycle is not cycle or not cycle.more_body or cycle.disconnected
                or cycle.response_complete or transport is None or transport.is_closing()):
            return None
        remaining = self.length - protocol._body_seen
        sock = transport.get_extra_info("socket")
        if remaining <= 0 or sock is None:
            return None
        descriptor = os.dup(sock.fileno())  # the worker's own: closing it never closes the transport's
        protocol.flow.pause_reading()  # until the response is complete (uvicorn resumes it then)
        body = cycle.body
        head = list(body.pieces) if type(body) is _BodyPieces else ([bytes(body)] if body else [])
        cycle.body = bytearray()
        if cycle.waiting_for_100_continue:
            # What uvicorn's receive() does before the first read (RFC 9110 §10.1.1).
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        self.taken = True
        return TakenBody(self, head, remaining, descriptor)

    def _read_whole(self) -> None:
        """On the loop: the body was read to its end; the next bytes start the next request."""
        protocol, cycle = self.protocol, self.cycle
        cycle.more_body = False
        cycle.message_event.set()
        if protocol.cycle is cycle and protocol.parser is not None:
            # The parser still expects the body it never saw: a new one starts at the next head.
            protocol.parser = _request_parser(protocol)
            protocol._in_body = False
            protocol._head_bytes = 0

    def _given_up(self, client_left: bool) -> None:
        """On the loop: the body was not read to its end, so where the next request starts is unknown:
        the connection ends after the answer (at once if the client left)."""
        self.cycle.keep_alive = False
        if client_left:
            # As connection_lost() will say: nobody to answer (uvicorn then expects no response).
            self.cycle.disconnected = True
            if self.protocol.transport is not None:
                self.protocol.transport.close()


class TakenBody:
    """The rest of a request body, read straight from the socket in a worker thread (blocking, GIL released)."""

    def __init__(self, raw: RawBody, head: list[bytes], remaining: int, descriptor: int) -> None:
        self.raw = raw
        self.loop: asyncio.AbstractEventLoop = raw.protocol.loop
        self.head = deque(piece for piece in head if piece)  # what the server had received already
        self.remaining = remaining  # bytes still in the socket
        self.socket = socket.socket(fileno=descriptor)
        self.socket.settimeout(BODY_IDLE_TIMEOUT)
        self.ended = False  # read whole, given up, or closed

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` with the next bytes (fewer if fewer came); 0 at the end of the body.
        ClientDisconnected if the connection ends (or stays silent) before that."""
        view = memoryview(buffer).cast("B")
        if self.head:
            piece = self.head.popleft()
            count = min(len(piece), len(view))
            view[:count] = piece[:count]
            if count < len(piece):
                self.head.appendleft(piece[count:])
            return count
        if self.remaining <= 0 or self.ended:
            return 0
        try:
            count = self.socket.recv_into(view, min(len(view), self.remaining))
        except OSError as exc:  # reset, or silent for BODY_IDLE_TIMEOUT
            self._give_up(client_left=True)
            raise ClientDisconnected(f"the request body could not be read: {exc}") from exc
        if not count:
            self._give_up(client_left=True)
            raise ClientDisconnected(f"the body ended {self.remaining} bytes short of its Content-Length")
        self.remaining -= count
        if not self.remaining:
            self.ended = True
            self.socket.close()
            self.loop.call_soon_threadsafe(self.raw._read_whole)
        return count

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (the rest of the body if negative); b"" at its end."""
        if size < 0:
            size = self.remaining + sum(map(len, self.head))
        buffer = bytearray(size)
        count = self.readinto(buffer) if size else 0
        return bytes(buffer[:count])

    def close(self) -> None:
        """Done with the body: if it was not read to its end, the connection closes after the answer."""
        if not self.ended:
            self._give_up(client_left=False)

    def _give_up(self, client_left: bool) -> None:
        if not self.ended:
            self.ended = True
            self.socket.close()
            self.loop.call_soon_threadsafe(self.raw._given_up, client_left)


def _request_parser(protocol: HttpToolsProtocol) -> httptools.HttpRequestParser:
    """A parser for ``protocol`` as uvicorn makes it (HttpToolsProtocol.__init__)."""
    parser = httptools.HttpRequestParser(protocol)
    try:
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
    except AttributeError:  # httptools < 0.6.3
        pass
    return parser


def _plain_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length of a request with exactly one, in digits, and no Transfer-Encoding; else None."""
    found = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            if found is not None or not value.strip().isdigit():
                return None
            found = int(value)
    return found


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head over ``max_head_bytes`` with 431."""

    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0  # bytes of the current request's head seen so far
        self._in_body = False  # the current request's head is complete
        self._refused = False
        self._body_seen = 0  # body bytes of the current request the parser has handed over

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
        self._body_seen += len(body)
        if len(cycle.body) > BODY_HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._body_seen = 0
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and type(cycle) is RequestResponseCycle:
            cycle.__class__ = _OneWriteCycle  # built by uvicorn's on_headers_complete: no other hook
        if self.scheme == "http" and cycle is not None and cycle.scope is self.scope:
            # Plain TCP only: under TLS the bytes on the socket are not the body.
            length = _plain_length(self.headers)
            if length:
                self.scope.setdefault("extensions", {})[RAW_BODY] = RawBody(self, cycle, length)  # type: ignore[typeddict-item]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next bytes start the next request's head.
        self._in_body = False
        self._head_bytes = 0


__all__ = ["BODY_HIGH_WATER", "MAX_HEAD_BYTES", "RAW_BODY", "BoundedHeadProtocol", "RawBody", "TakenBody"]
