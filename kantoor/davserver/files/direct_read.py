"""Plain GET and HEAD of a file in the user's own drive, answered without wsgidav's middleware.

A small GET through wsgidav crossed five middlewares, built a WSGI environ, resolved
the path through the provider and wrapped the response twice; that was as much CPU as
the database read itself (bench/webdav.py, py-spy). :class:`DirectReads` sits in front
of the drive's WSGI host and answers the requests whose answer has nothing to decide
but the file:

- ``GET``/``HEAD``, no query, no request body, none of the headers that make wsgidav
  decide something (``If``, ``If-Match``, ``If-None-Match``, ``If-Modified-Since``,
  ``If-Unmodified-Since``, ``If-Range``, ``Range``, ``Depth``);
- an ``Authorization`` header the drive checked in full (password, throttle, account
  state, plan with WebDAV) less than ``REVERIFY_SECONDS`` ago
  (:class:`~kantoor.davserver.files.authentication.RecentLogins`), on a connection a
  password may travel over;
- a path ``/<own login>/…`` naming a file of the user's own drive (read through the
  Store with the user as actor, so the ACL engine still decides).

The path is looked up, and a file of up to :data:`BLOCK` bytes read whole, on lookup
threads of their own on SQLite (a :class:`kantoor.worker_threads.WorkerThreads` of one):
in the shared pool of worker threads every small GET woke another thread, and those
threads took the GIL from each other and from the event loop (a quarter of the server's
CPU went to futex calls and the switches after them; 2-3 context switches per GET now
instead of 7-18, perf and /proc). Nothing on those threads waits for a client: a larger
file is streamed by a shared worker, so a slow download (or many) never holds up a small
GET (``test_small_reads_are_answered_while_every_shared_worker_serves_a_stalled_download``).
On PostgreSQL the shared pool does it all, as before (see :data:`SQLITE_READERS`).

Everything else (folders, other drives, ``Groups/``, ``Shared with me/``, 404s,
conditional and range requests, failures) goes to wsgidav unchanged, in a shared
worker thread. The answer carries the headers wsgidav's would (Content-Length,
Last-Modified, Content-Type, Date, ETag, Accept-Ranges; see
``RequestServer._send_resource``), tested side by side in
``tests/davserver/files/test_direct_read.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

from kantoor.davserver.files.authentication import password_may_travel
from kantoor.davserver.files.context import DriveContext
from kantoor.davserver.files.resources import GROUPS, MAX_FOLDER_PATH, SHARED, epoch_seconds, guessed_content_type
from kantoor.davserver.wsgi_host import WSGIHost, in_worker
from kantoor.storage.database import is_sqlite
from kantoor.storage.models import Account, Item
from kantoor.worker_threads import WorkerThreads

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Request headers after which wsgidav has something to decide: such requests go to it. (A GET
# with a body, Content-Length other than 0, is wsgidav's too: it refuses it.)
DECIDING_HEADERS = frozenset({b"if", b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since",
                              b"if-range", b"range", b"depth", b"transfer-encoding"})
# Body pieces of a larger file, as wsgidav's block_size (application.py); a file up to this size is read
# whole by the lookup thread, a larger one streamed from the shared pool.
BLOCK = 1024 * 1024
# Threads that look up plain reads and read small files whole on SQLite (a one-thread pool). A lookup holds the GIL
# but for the few microseconds of each sqlite3 call, so a second thread added GIL hand-offs, not reads
# (8 clients GETting 4 KiB files: 0.23-0.35 ms of server CPU per GET with one, 0.26-0.35 with two,
# 0.40-0.53 in the shared pool). A PostgreSQL lookup waits for the server's answer instead, and needs as
# many threads as there are clients: lookup threads of their own then cost more CPU than the shared pool
# (four: a third fewer GETs, a fifth more CPU each; sixteen: 5-20 % more CPU), so there it does all.
SQLITE_READERS = 1


class HttpDate:
    """``Date`` values (RFC 9110 §5.6.7), formatted once per second (formatdate was ~10 µs a request)."""

    def __init__(self) -> None:
        self._second = -1
        self._text = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._text = formatdate(second, usegmt=True).encode("ascii")
            self._second = second
        return self._text


@functools.lru_cache(maxsize=4096)
def http_date(seconds: float) -> bytes:
    """An RFC 9110 §5.6.7 date, remembered: the same files' Last-Modified are sent again and again."""
    return formatdate(seconds, usegmt=True).encode("ascii")


class DirectReads:
    """ASGI app: answers plain reads of own files itself, hands everything else to ``host``."""

    def __init__(self, host: WSGIHost, ctx: DriveContext, readers: int | None = None) -> None:
        self.host = host
        self.ctx = ctx
        self.dates = HttpDate()
        if readers is None and is_sqlite(ctx.store.engine):
            readers = SQLITE_READERS
        # None: the shared pool looks up too (see SQLITE_READERS).
        self.lookups = WorkerThreads(readers, "drive-read") if readers else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and not _has_body(scope):
            account = plain_request_by(scope, self.ctx, DECIDING_HEADERS)
            if account is not None:
                loop = asyncio.get_running_loop()
                if self.lookups is None:
                    rest = await in_worker(loop, self.host.executor, self._answer, loop, scope, send, account)
                else:
                    found = await self.lookups.run(self._look_up, scope, account)
                    if type(found) is list:
                        rest = found  # a small file's whole answer
                    elif found is None:
                        rest = await in_worker(loop, self.host.executor, self.host.run_in_worker, loop, scope, send)
                    else:
                        rest = await in_worker(loop, self.host.executor, self._stream, loop, scope, send, *found)
                for message in rest:
                    await send(message)
                return
        await self.host(scope, receive, send)

    def _answer(self, loop: asyncio.AbstractEventLoop, scope: Scope, send: Send, account: Account) -> list[Message]:
        """In a shared worker thread: the whole answer (the messages still to send), the file's or wsgidav's."""
        found = self._look_up(scope, account)
        if type(found) is list:
            return found
        if found is None:
            return self.host.run_in_worker(loop, scope, send)
        return self._stream(loop, scope, send, *found)

    def _look_up(self, scope: Scope, account: Account) -> list[Message] | tuple[Message, str, int] | None:
        """In a lookup thread (nothing here waits for a client): a small file's whole answer;
        a larger one's response start, blob and size, to be streamed from the shared pool; None if
        wsgidav is to answer."""
        item = self._own_file(scope, account)
        if item is None:
            return None
        size = int(item.size)
        modified = epoch_seconds(item.updated_at)
        content_type = item.content_type or guessed_content_type(item.name, None, self.ctx.guess_environ())
        headers = [
            (b"content-length", str(size).encode("ascii")),
            (b"last-modified", http_date(modified)),
            (b"content-type", content_type.strip().encode("latin1")),
            (b"date", self.dates.now()),
            (b"etag", b'"' + item.etag.strip('"').encode("ascii") + b'"'),
            (b"accept-ranges", b"bytes"),
        ]
        start = {"type": "http.response.start", "status": 200, "headers": headers}
        if scope["method"] == "HEAD":
            return [start, {"type": "http.response.body", "body": b"", "more_body": False}]
        if item.inline_body is not None or item.blob_sha256 is None:
            return [start, {"type": "http.response.body", "body": item.inline_body or b"", "more_body": False}]
        if size <= BLOCK:
            try:
                body = self.ctx.store.blobs.read(item.blob_sha256, size)
            except FileNotFoundError:
                return None  # deleted and collected since its row was read: wsgidav reads the path again
            return [start, {"type": "http.response.body", "body": body, "more_body": False}]
        return start, item.blob_sha256, size

    def _stream(self, loop: asyncio.AbstractEventLoop, scope: Scope, send: Send, start: Message, sha256: str,
                size: int) -> list[Message]:
        """In a shared worker thread: a larger blob in BLOCK pieces. Every piece but the last is sent from here
        while the next one is read from the file (at most two pieces in memory); the send is awaited before
        the next one starts, so a slow client slows the reading down. The last piece goes back with the
        worker's result. A blob gone since its row was read (deleted and collected meanwhile) is wsgidav's
        to answer, as it then reads the path again."""
        async def send_all(messages: list[Message]) -> None:
            for message in messages:
                await send(message)

        try:
            body = self.ctx.store.blobs.open(sha256)
        except FileNotFoundError:
            return self.host.run_in_worker(loop, scope, send)
        pending: list[Message] = [start]
        sending: concurrent.futures.Future[None] | None = None
        remaining = size
        try:
            with body:
                while remaining > 0:
                    piece = body.read(min(BLOCK, remaining))
                    if not piece:
                        break  # the file is shorter than its row says: end here, as wsgidav does
                    remaining -= len(piece)
                    if sending is not None:
                        sending.result()
                        sending = None
                    if remaining > 0:
                        sending = asyncio.run_coroutine_threadsafe(
                            send_all([*pending, {"type": "http.response.body", "body": piece, "more_body": True}]),
                            loop)
                        pending = []
                    else:
                        pending.append({"type": "http.response.body", "body": piece, "more_body": False})
            if sending is not None:
                sending.result()
                sending = None
        finally:
            if sending is not None:
                sending.cancel()
        if not pending or pending[-1].get("more_body", True):
            pending.append({"type": "http.response.body", "body": b"", "more_body": False})
        return pending

    def _own_file(self, scope: Scope, account: Account) -> Item | None:
        """The item ``/<login>/<folders…>/<name>`` names in the account's own drive, or None if the
        path names anything else (left to wsgidav, which also answers every error)."""
        folder_path = own_drive_path(scope, account)
        if folder_path is None:
            return None
        try:
            place = self.ctx.store.resolve_drive_path(account.principal_id, folder_path, account.principal_id)
        except Exception:
            return None  # wsgidav reads it again and answers the error its way
        item = place.item
        if item is None or item.updated_at is None or not item.etag:
            return None
        return item


def plain_request_by(scope: Scope, ctx: DriveContext, deciding: frozenset[bytes]) -> Account | None:
    """The account of a request wsgidav would have nothing to decide for but what its path names:
    none of the ``deciding`` headers, Basic credentials checked in full less than REVERIFY_SECONDS
    ago, sent where a password may travel. None: let wsgidav answer it."""
    authorization = None
    for name, value in scope["headers"]:
        if name in deciding:
            return None
        if name == b"authorization":
            if authorization is not None:
                return None  # twice: wsgidav's environ would join them
            authorization = value
    recent = ctx.recent_logins
    if authorization is None or recent is None:
        return None
    client = scope.get("client")
    transport = {"wsgi.url_scheme": scope.get("scheme", "http"), "REMOTE_ADDR": client[0] if client else ""}
    if not password_may_travel(transport, ctx.settings.auth.allow_plaintext_on_loopback):
        return None
    return recent.lookup(authorization.decode("latin1"))


def own_drive_path(scope: Scope, account: Account) -> str | None:
    """The path in the account's own drive (``"a/b/f"``) of a request for ``/<login>/a/b/f``; None for
    every other path (the mount point, other drives, ``Groups/``, ``Shared with me/``, folder URLs
    ending in "/", paths wsgidav would normalise)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not path.startswith(root + "/") or path.endswith("/") or scope.get("query_string"):
        return None
    parts = path[len(root) + 1:].split("/")
    if len(parts) < 2 or any(part in ("", ".", "..") for part in parts):
        return None
    if parts[0].lower() != account.login.lower():
        return None  # another's Drop folder, or nothing
    if parts[1] in (GROUPS, SHARED):
        return None
    folder_path = "/".join(parts[1:])
    return folder_path if len(folder_path) <= MAX_FOLDER_PATH else None


def _has_body(scope: Scope) -> bool:
    return any(name == b"content-length" and value.strip() != b"0" for name, value in scope["headers"])


__all__ = ["DirectReads", "own_drive_path", "plain_request_by"]
