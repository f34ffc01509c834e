"""A large plain PUT into the user's own drive, its body read off the socket straight into the blob store.

Through wsgidav a 50 MiB PUT ran at about 40 % of nginx's DAV module (bench/webdav.py): every
byte was copied three times on the event loop under the GIL (uvloop's read, httptools' body
piece, the join into an ASGI message), handed to the worker thread 1 MiB at a time, joined
again, then hashed and written there, one step after the other. :class:`DirectUploads` (the
WSGI host of the drive) takes the body of the PUTs where wsgidav would decide nothing but what
the Store decides again in its write transaction off the socket instead
(:class:`~kantoor.davserver.http_protocol.RawBody`): a worker thread ``recv_into``'s reused
buffers and writes them to the blob file while a second one hashes them
(:meth:`~kantoor.storage.blobs.BlobStore.write`), all with the GIL released.

Which PUTs: those :mod:`~kantoor.davserver.files.direct_put` would take but for their size
(a Content-Length body over ``PREREAD_LIMIT`` and at most the upload limit, none of the
headers wsgidav decides on but ``Expect: 100-continue``, which is answered as uvicorn would
when the body is taken; credentials checked in full lately; a path ``/<own login>/…/<name>``
whose folder exists, that is not a folder, with a valid name, while the database holds no
live WebDAV lock), on a plain TCP connection (the server offers the raw body only there).

Everything is looked at *before* the body is taken: any other PUT goes to wsgidav with its
body untouched, in the same worker thread. The Store call is the one wsgidav's PUT makes
(``put_item`` with the same content type, size limit, claim and actor, so quota, rights and
locks are checked in the write transaction as for every PUT; a LOCK granted while the body
arrived is found there). The answer is wsgidav's: ``201 Created`` with its page or ``204 No
Content`` with the new ``ETag``; a refusal once the body is read (507 when the drive is full,
423 for a lock granted meanwhile …) is the page wsgidav's ErrorPrinter makes of the same
DAVError. A client that leaves mid-body gets nothing: the temporary blob file is removed, no
row was written, the previous version stays. Compared side by side with wsgidav in
``tests/davserver/files/test_direct_upload.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from wsgidav.dav_error import (
    HTTP_NO_CONTENT,
    HTTP_NOT_MODIFIED,
    DAVError,
    as_DAVError,
    get_http_status_string,
)

from kantoor.davserver.files.context import DriveContext
from kantoor.davserver.files.direct_put import DECIDING_HEADERS
from kantoor.davserver.files.direct_read import plain_request_by
from kantoor.davserver.files.direct_write import StoredAnswers, plain_put_place, store_as_wsgidav
from kantoor.davserver.files.errors import as_dav_error
from kantoor.davserver.http_protocol import RAW_BODY, RawBody, TakenBody
from kantoor.davserver.wsgi_host import PREREAD_LIMIT, ClientDisconnected, RequestBody, WSGIApp, WSGIHost
from kantoor.storage.drive import DrivePlace
from kantoor.storage.models import Account

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# As for a small direct PUT, but Expect: 100-continue is no reason to hand a large one on (curl sends
# it with every body over 1 MiB): TakenBody answers it as uvicorn's receive() would.
UPLOAD_DECIDING_HEADERS = DECIDING_HEADERS - {b"expect"}

_logger = logging.getLogger(__name__)


class DirectUploads(WSGIHost):
    """The drive's WSGI host: stores large plain PUTs into one's own drive itself, runs wsgidav for the rest."""

    def __init__(self, app: WSGIApp, ctx: DriveContext, workers: int = 16) -> None:
        super().__init__(app, workers=workers)
        self.ctx = ctx
        self.answers = StoredAnswers()
        self.taken = 0  # PUT bodies read off the socket here (tests count them) …
        self.stored = 0  # … and stored

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT":
            raw = scope.get("extensions", {}).get(RAW_BODY)
            limit = self.ctx.settings.limits.max_upload_bytes
            if (isinstance(raw, RawBody) and raw.length > PREREAD_LIMIT and (limit is None or raw.length <= limit)
                    and not _expect_other_than_continue(scope)):
                account = plain_request_by(scope, self.ctx, UPLOAD_DECIDING_HEADERS)
                if account is not None:
                    loop = asyncio.get_running_loop()
                    context = contextvars.copy_context()
                    rest = await loop.run_in_executor(self.executor, context.run, self._answer,
                                                      loop, scope, receive, send, account, raw)
                    for message in rest:
                        await send(message)
                    return
        await super().__call__(scope, receive, send)

    def _answer(self, loop: asyncio.AbstractEventLoop, scope: Scope, receive: Receive, send: Send,
                account: Account, raw: RawBody) -> list[Message]:
        """In a worker thread: store the body and answer as wsgidav would, or let wsgidav do it all."""
        found = plain_put_place(self.ctx, scope, account)
        body = None
        if found is not None:
            body = asyncio.run_coroutine_threadsafe(_take(raw), loop).result()
        if body is None:
            # wsgidav reads the body as it always does (nothing of it was taken).
            return self.run_in_worker(loop, scope, send, RequestBody(loop, receive, raw.length))
        place, name = found
        self.taken += 1
        try:
            return self._store(scope, account, place, name, body)
        except ClientDisconnected:
            return []  # nobody to answer; nothing was kept (BlobStore.write removed its temporary file)
        finally:
            body.close()

    def _store(self, scope: Scope, account: Account, place: DrivePlace, name: str, body: TakenBody) -> list[Message]:
        try:
            item, created = store_as_wsgidav(self.ctx, scope, account, place, name, body)
        except ClientDisconnected:
            raise
        except Exception as exc:
            error = as_dav_error(exc)
            if error is None:
                # Not a refusal but a failure: what wsgidav's PUT makes of it (util.fail: a 500 page).
                _logger.exception("PUT: storing the body failed")
                error = as_DAVError(exc)
            return self._error(error)
        self.stored += 1
        return self.answers.stored(item, created)

    def _error(self, error: DAVError) -> list[Message]:
        """The answer wsgidav's ErrorPrinter gives for ``error`` (wsgidav/error_printer.py)."""
        status = int(get_http_status_string(error).split(" ", 1)[0])
        if error.value in (HTTP_NOT_MODIFIED, HTTP_NO_CONTENT):
            return [{"type": "http.response.start", "status": status,
                     "headers": [(b"content-length", b"0"), (b"date", self.answers.dates.now())]},
                    {"type": "http.response.body", "body": b"", "more_body": False}]
        content_type, page = error.get_response_page()
        headers = [(b"content-type", content_type.encode("latin1")),
                   (b"content-length", str(len(page)).encode("ascii")), (b"date", self.answers.dates.now())]
        headers += [(name.encode("latin1").lower(), value.encode("latin1")) for name, value in error.add_headers or []]
        return [{"type": "http.response.start", "status": status, "headers": headers},
                {"type": "http.response.body", "body": page if error.add_body else b"",
                 "more_body": False}]


async def _take(raw: RawBody) -> TakenBody | None:
    return raw.take()  # on the loop: it pauses the transport's reading


def _expect_other_than_continue(scope: Scope) -> bool:
    """An Expect header other than one ``100-continue`` (wsgidav decides what to answer to those)."""
    values = [value for name, value in scope["headers"] if name == b"expect"]
    return bool(values) and (len(values) > 1 or values[0].strip().lower() != b"100-continue")


__all__ = ["DirectUploads"]
