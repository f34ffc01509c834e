"""A small PUT of a file into the user's own drive, stored without wsgidav's middleware.

A 4 KiB PUT through wsgidav paid about a third of its worker CPU to wsgidav and the
WSGI environ around the Store's write (bench/webdav.py, cProfile). :class:`DirectPuts`
stores, in one worker thread, the PUTs where wsgidav would decide nothing but what the
Store decides again in the write transaction anyway:

- ``PUT`` with a Content-Length body of at most ``PREREAD_LIMIT`` bytes (read whole on
  the loop first, as the WSGI host does), no query, none of ``If``, ``If-Match``,
  ``If-None-Match``, ``If-(Un)Modified-Since``, ``If-Range``, ``Range``,
  ``Content-Range`` (400, RFC 9110 §14.4), ``Content-Encoding`` (501),
  ``Transfer-Encoding``, ``Expect``, ``X-OC-Mtime``;
- credentials checked in full lately, as for direct reads
  (:func:`~kantoor.davserver.files.direct_read.plain_request_by`);
- a path ``/<own login>/…/<name>`` whose folder exists, that is not a folder itself,
  with a valid name, while the database holds no live WebDAV lock at all (read in the
  same statement as the path): with no lock, wsgidav's lock checks pass, and the Store
  checks the locks on the path again when it commits (``WriteClaim``), as for every PUT.

wsgidav's PUT also marks its URL as being written while the body arrives, so that a LOCK
in the meantime is refused (CWE-367); here the body has arrived before anything is looked
at, and a LOCK committed before the write transaction is found by the claim check in it
(LockConflict: the PUT goes to wsgidav, which answers 423), one committed after it simply
follows the PUT.

The Store call is the one wsgidav's PUT makes (``Upload.writelines``: same content
type, size limit, claim, actor for the ACL and quota). Anything else, and any PUT the
Store refuses (nothing was written then), goes to wsgidav with the body already read,
in the same worker thread, and wsgidav answers it. The answer is wsgidav's: ``201
Created`` with its HTML page, or ``204 No Content``, with the new ``ETag``; compared
side by side in ``tests/davserver/files/test_direct_put.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kantoor.davserver.files.context import DriveContext
from kantoor.davserver.files.direct_read import DirectReads, plain_request_by
from kantoor.davserver.files.direct_write import StoredAnswers, plain_put_place, store_as_wsgidav
from kantoor.davserver.wsgi_host import PREREAD_LIMIT, RequestBody, in_worker, read_whole_body
from kantoor.storage.models import Account, Item

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Request headers after which wsgidav has something to decide for a PUT: such PUTs go to it.
DECIDING_HEADERS = frozenset({b"if", b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since",
                              b"if-range", b"range", b"content-range", b"content-encoding", b"transfer-encoding",
                              b"expect", b"x-oc-mtime"})


class DirectPuts:
    """ASGI app: stores small plain PUTs into one's own drive itself, hands everything else to ``reads``."""

    def __init__(self, reads: DirectReads, ctx: DriveContext) -> None:
        self.reads = reads
        self.host = reads.host
        self.ctx = ctx
        self.answers = StoredAnswers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT":
            length = _content_length(scope)
            if length is not None and length <= PREREAD_LIMIT:
                account = plain_request_by(scope, self.ctx, DECIDING_HEADERS)
                if account is not None:
                    loop = asyncio.get_running_loop()
                    body = await read_whole_body(loop, receive, length)
                    if body is None:
                        return  # nobody to answer, and nothing was done
                    rest = await in_worker(loop, self.host.executor, self._answer, loop, scope, send, account, body)
                    for message in rest:
                        await send(message)
                    return
        await self.reads(scope, receive, send)

    def _answer(self, loop: asyncio.AbstractEventLoop, scope: Scope, send: Send, account: Account,
                body: RequestBody) -> list[Message]:
        """In a worker thread: store the body and answer as wsgidav would, or let wsgidav do it all."""
        stored = self._store(scope, account, body)
        if stored is None:
            return self.host.run_in_worker(loop, scope, send, body)
        return self.answers.stored(*stored)

    def _store(self, scope: Scope, account: Account, body: RequestBody) -> tuple[Item, bool] | None:
        """(item, created) once the Store took the body; None if wsgidav is to handle the PUT (nothing was
        stored then)."""
        found = plain_put_place(self.ctx, scope, account)
        if found is None:
            return None
        try:
            return store_as_wsgidav(self.ctx, scope, account, *found, body.whole())
        except Exception:
            # Refused (quota, size, a lock granted meanwhile …) or failed: nothing was stored;
            # wsgidav runs the PUT again, with the body still unread, and answers it its way.
            return None


def _content_length(scope: Scope) -> int | None:
    """The request's Content-Length if it has exactly one, in digits; None otherwise."""
    found = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            if found is not None or not value.strip().isdigit():
                return None
            found = int(value)
    return found


__all__ = ["DirectPuts"]
