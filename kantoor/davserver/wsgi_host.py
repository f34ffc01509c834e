"""The WSGI apps (Radicale, wsgidav) on the ASGI server: each request runs in a worker thread.

Like a2wsgi's ``WSGIMiddleware`` (whose environ builder it uses), with fewer crossings
between the worker thread and the event loop, which were a third of a small request's
CPU (bench/webdav.py, py-spy):

- a small request body (Content-Length up to :data:`PREREAD_LIMIT`) is read on the loop
  before the app is called, instead of one thread → loop → thread round trip per read;
- the response start is held until the first body piece, and the last piece goes back
  with the worker's result: a small response costs no crossing at all, a large one one
  per piece (each piece awaits ``send``, so a slow client slows the app down: at most one
  piece per request is in memory);
- a body cut off by the client raises :class:`ClientDisconnected` instead of ending like
  a complete one (RFC 9112 §7.1: an incomplete chunked body is not a message), so an
  interrupted upload is never stored truncated.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi.wsgi import build_environ

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Bodies up to this size are read on the loop before the app runs (one message or a few).
PREREAD_LIMIT = 64 * 1024
# Larger bodies are pulled from the loop in batches of up to this many bytes per crossing.
PULL_BATCH = 1024 * 1024
_READ_ALL = -1


def in_worker(loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor, func: Callable[..., Any],
              *args: Any) -> asyncio.Future[Any]:
    """``func(*args)`` in one of ``executor``'s threads, in a copy of the caller's context: what
    ``loop.run_in_executor(executor, contextvars.copy_context().run, func, *args)`` does, with
    the result handed back by one ``call_soon_threadsafe`` instead of chaining a concurrent
    future to an asyncio one (several callbacks and lock round trips on the loop for every
    small GET). Cancelling the returned future keeps ``func`` from starting if it has not yet,
    as with run_in_executor; a running one finishes and its result is dropped."""
    future = loop.create_future()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            result = context.run(func, *args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, as run_in_executor does
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    queued = executor.submit(work)
    future.add_done_callback(lambda done: queued.cancel() if done.cancelled() else None)
    return future


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return  # cancelled meanwhile
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


class ClientDisconnected(OSError):
    """The client closed the connection before the request body was complete."""


class RequestBody:
    """``wsgi.input``: the request body, pulled from the loop by the worker thread as it reads.

    The pieces the server delivered are kept as they are and joined only into what a read
    returns: a 1 MiB read of an upload copies each byte once here, or not at all when it is
    one whole piece (a bytearray buffer cost two copies, in and out, plus moving what was
    left behind).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Receive, expected: int | None) -> None:
        self.loop = loop
        self.receive = receive
        self.expected = expected  # Content-Length, if the client sent one
        self.received = 0
        self.pieces: deque[bytes] = deque()  # received and not yet read, in order
        self.buffered = 0  # bytes in ``pieces`` not read yet
        self.offset = 0  # bytes of ``pieces[0]`` already read
        self.more = True

    def _take(self, message: Message) -> None:
        if message.get("type") == "http.disconnect":
            self.more = False
            raise ClientDisconnected("the client closed the connection during the request body")
        chunk = message.get("body", b"")
        if chunk:
            self.received += len(chunk)
            self.pieces.append(chunk)
            self.buffered += len(chunk)
        self.more = bool(message.get("more_body", False))
        if not self.more and self.expected is not None and self.received < self.expected:
            raise ClientDisconnected(f"the body ended after {self.received} of {self.expected} bytes")

    async def read_all_here(self) -> None:
        """Read the whole (small) body on the loop; ClientDisconnected if it does not arrive."""
        while self.more:
            self._take(await self.receive())

    async def _gather(self, want: int) -> list[Message]:
        """Body messages (at least one) until ``want`` bytes came, the body ended or the client left."""
        messages: list[Message] = []
        got = 0
        while True:
            message = await self.receive()
            messages.append(message)
            got += len(message.get("body", b""))
            if message.get("type") != "http.request" or not message.get("more_body", False) or got >= want:
                return messages

    def _pull(self, want: int = 1) -> None:
        # One crossing to the loop per PULL_BATCH bytes rather than per message the
        # server delivers (64 KiB or less): a 50 MiB upload made 800 round trips.
        messages = asyncio.run_coroutine_threadsafe(self._gather(min(want, PULL_BATCH)), loop=self.loop).result()
        for message in messages:
            self._take(message)

    def _first(self, size: int) -> bytes:
        """The next ``size`` buffered bytes (all of them if fewer), removed from the buffer.

        What is left of a piece stays where it is (``offset``): copying the rest of a 2 MiB
        piece at every 1 MiB read cost as much CPU as hashing the upload.
        """
        size = min(size, self.buffered)
        if size <= 0:
            return b""
        pieces = self.pieces
        if not self.offset and len(pieces[0]) == size:
            self.buffered -= size
            return pieces.popleft()  # the piece as delivered: no copy
        parts: list[bytes | memoryview] = []
        need = size
        while need:
            piece, offset = pieces[0], self.offset
            available = len(piece) - offset
            if available <= need:
                parts.append(memoryview(piece)[offset:] if offset else piece)
                pieces.popleft()
                self.offset = 0
                need -= available
            else:
                parts.append(memoryview(piece)[offset:offset + need])
                self.offset = offset + need
                need = 0
        self.buffered -= size
        return b"".join(parts)

    def whole(self) -> bytes:
        """What :meth:`read_all_here` read, left unread (a front end that may still hand the request
        on to the app looks at the body without taking it)."""
        if self.more:
            raise RuntimeError("the body has not been read whole")
        pieces = list(self.pieces)
        if self.offset:
            pieces[0] = pieces[0][self.offset:]
        return b"".join(pieces)

    def read(self, size: int | None = _READ_ALL) -> bytes:
        if size is None:
            size = _READ_ALL
        while self.more and (size < 0 or self.buffered < size):
            self._pull(PULL_BATCH if size < 0 else size - self.buffered)
        return self._first(self.buffered if size < 0 else size)

    def readline(self, limit: int = _READ_ALL) -> bytes:
        while True:
            end = -1
            seen = 0
            start = self.offset
            for piece in self.pieces:
                at = piece.find(b"\n", start)
                if at >= 0:
                    end = seen + at - start + 1
                    break
                seen += len(piece) - start
                start = 0
            if end >= 0 or not self.more or (limit >= 0 and self.buffered >= limit):
                break
            self._pull()
        if end < 0:
            end = self.buffered
        if limit >= 0:
            end = min(end, limit)
        return self._first(end)

    def readlines(self, hint: int = _READ_ALL) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class _Response:
    """The worker-thread side of one response."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Send) -> None:
        self.loop = loop
        self.send = send
        self.start: Message | None = None
        self.started = False  # the start message has gone to the server

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.started:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.start is not None:
            raise RuntimeError("start_response was already called")
        self.start = {"type": "http.response.start", "status": int(status.split(" ", 1)[0]),
                      "headers": [(name.strip().encode("latin1").lower(), value.strip().encode("latin1"))
                                  for name, value in headers]}
        return self._write

    def _messages(self, chunk: bytes, more: bool) -> list[Message]:
        out: list[Message] = []
        if not self.started:
            if self.start is None:
                raise RuntimeError("the WSGI app sent a body before start_response")
            out.append(self.start)
            self.started = True
        out.append({"type": "http.response.body", "body": chunk, "more_body": more})
        return out

    async def _send_all(self, messages: list[Message]) -> None:
        for message in messages:
            await self.send(message)

    def _write(self, chunk: bytes) -> None:
        """WSGI's write() callable, and every body piece but the last: sent now, waiting for the server."""
        asyncio.run_coroutine_threadsafe(self._send_all(self._messages(chunk, True)), self.loop).result()

    def run(self, app: WSGIApp, environ: dict[str, Any]) -> list[Message]:
        """Call the app; return the messages still to send (the last piece, with the start if it is unsent)."""
        iterable = app(environ, self.start_response)
        try:
            pending: bytes | None = None
            for chunk in iterable:
                if not chunk:
                    continue
                if pending is not None:
                    self._write(pending)
                pending = chunk
            return self._messages(pending or b"", False)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()


async def _no_body() -> Message:
    raise AssertionError("a body read whole has nothing more to receive")


async def read_whole_body(loop: asyncio.AbstractEventLoop, receive: Receive, length: int) -> RequestBody | None:
    """A Content-Length body of ``length`` bytes read whole on the loop (before a worker thread is taken);
    None if the client went away meanwhile (nobody to answer then)."""
    body = RequestBody(loop, receive, length)
    if not length:
        body.more = False  # no body: nothing to pull
        return body
    try:
        await body.read_all_here()
    except ClientDisconnected:
        return None
    return body


def _environ(scope: Scope, body: RequestBody) -> dict[str, Any]:
    environ = build_environ(scope, body)  # type: ignore[arg-type]
    environ["wsgi.errors"] = sys.stderr
    return environ


class WSGIHost:
    """An ASGI app running a WSGI app in a pool of ``workers`` threads."""

    def __init__(self, app: WSGIApp, workers: int = 16) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="WSGI")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        loop = asyncio.get_running_loop()
        length = expected = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = value.strip()
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if length is not None and length.isdigit():
            expected = int(length)
        if not chunked and (expected or 0) <= PREREAD_LIMIT:
            preread = await read_whole_body(loop, receive, expected or 0)
            if preread is None:
                return  # nobody to answer, and nothing was done
            body = preread
        else:
            body = RequestBody(loop, receive, expected)
        response = _Response(loop, send)
        rest = await in_worker(loop, self.executor, response.run, self.app, _environ(scope, body))
        await response._send_all(rest)

    def run_in_worker(self, loop: asyncio.AbstractEventLoop, scope: Scope, send: Send,
                      body: RequestBody | None = None) -> list[Message]:
        """Run the app in the calling worker thread and return the messages still to send, as the
        executor call in :meth:`__call__` does, for a request whose ``body`` was read whole already
        (None: it has none). For a front end that ran in a worker and found the request is not one
        it answers itself (:mod:`kantoor.davserver.files.direct_read`): no second crossing."""
        if body is None:
            body = RequestBody(loop, _no_body, 0)
            body.more = False
        return _Response(loop, send).run(self.app, _environ(scope, body))

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["PREREAD_LIMIT", "ClientDisconnected", "RequestBody", "WSGIHost", "in_worker"]
