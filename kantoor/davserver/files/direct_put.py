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
import contextvars
import datetime
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from wsgidav.dav_error import HTTP_CREATED, DAVError
from wsgidav.lock_man.lock_manager import normalize_lock_root

from kantoor.davserver.files.context import DriveContext
from kantoor.davserver.files.direct_read import DirectReads, HttpDate, own_drive_path, plain_request_by
from kantoor.davserver.files.resources import HREF_SAFE, folder_key, guessed_content_type
from kantoor.davserver.wsgi_host import PREREAD_LIMIT, RequestBody, read_whole_body
from kantoor.storage.locks import WriteClaim
from kantoor.storage.models import Account
from kantoor.storage.names import validate_item_name

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
        self.dates = HttpDate()
        self._created: tuple[str, bytes, bytes] | None = None

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
                    context = contextvars.copy_context()
                    rest = await loop.run_in_executor(self.host.executor, context.run, self._answer,
                                                      loop, scope, send, account, body)
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
        etag, created = stored
        headers: list[tuple[bytes, bytes]]
        if created:
            content_type, page = self._created_page()
            headers = [(b"content-type", content_type.encode("latin1")), (b"date", self.dates.now()),
                       (b"content-length", str(len(page)).encode("ascii")), (b"etag", etag)]
            status = 201
        else:
            page = b""
            headers = [(b"content-length", b"0"), (b"date", self.dates.now()), (b"etag", etag)]
            status = 204
        return [{"type": "http.response.start", "status": status, "headers": headers},
                {"type": "http.response.body", "body": page, "more_body": False}]

    def _created_page(self) -> tuple[str, bytes]:
        """wsgidav's ``201 Created`` page (DAVError.get_response_page), which ends with the time it is made:
        built once, then only the time is put in (building it whole was 5 % of a small PUT's CPU)."""
        if self._created is None:
            content_type, page = DAVError(HTTP_CREATED).get_response_page()
            # The page ends "… - <str(datetime.now())>\n</body></html>" (html_escape leaves that text alone).
            head, _, _stamp = page.rpartition(b" - ")
            self._created = (content_type, head + b" - ", b"\n</body></html>")
            assert page.endswith(self._created[2]), "wsgidav's status page changed its form"
        content_type, head, tail = self._created
        return content_type, head + str(datetime.datetime.now()).encode("ascii") + tail

    def _store(self, scope: Scope, account: Account, body: RequestBody) -> tuple[bytes, bool] | None:
        """(ETag header value, created) once the Store took the body; None if wsgidav is to handle the PUT
        (nothing was stored then)."""
        path = own_drive_path(scope, account)
        if path is None:
            return None
        name = path.rpartition("/")[2]
        try:
            validate_item_name(name)
        except ValueError:
            return None
        store = self.ctx.store
        try:
            place = store.resolve_drive_path(account.principal_id, path, account.principal_id,
                                             with_locks=True, standalone=True)
        except Exception:
            return None
        if place.folder is not None or place.parent is None or place.locks_exist is not False:
            return None
        parent = place.parent
        # CONTENT_TYPE as the WSGI environ has it (repeated headers joined with ",").
        declared = ",".join(value.decode("latin1") for header, value in scope["headers"]
                            if header == b"content-type") or None
        # As wsgidav's PUT: Upload.writelines with File(...).get_ref_url() as the claimed lock root.
        root = normalize_lock_root(quote(folder_key(parent) + "/" + name, safe=HREF_SAFE))
        claim = WriteClaim(root=root, principal=account.login, tokens=frozenset())
        data = body.whole()
        content_type = guessed_content_type(name, declared, self.ctx.guess_environ())
        try:
            item, created = store.put_item(parent.id, name, data, content_type, actor=account.principal_id,
                                           max_size=self.ctx.settings.limits.max_upload_bytes, claim=claim)
        except Exception:
            # Refused (quota, size, a lock granted meanwhile …) or failed: nothing was stored;
            # wsgidav runs the PUT again, with the body still unread, and answers it its way.
            return None
        return b'"' + item.etag.strip('"').encode("ascii") + b'"', created


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
