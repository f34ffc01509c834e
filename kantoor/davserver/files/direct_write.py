"""What the two direct PUT fronts share: where a plain PUT writes, the Store call wsgidav's PUT makes,
and the answers wsgidav gives for it.

:mod:`~kantoor.davserver.files.direct_put` (small bodies, read whole first) and
:mod:`~kantoor.davserver.files.direct_upload` (large bodies, read off the socket) take the same PUTs
but for their size: a file ``/<own login>/…/<name>`` whose folder exists, that is not a folder, with
a valid name, while the database holds no live WebDAV lock. Both store it as wsgidav's PUT does
(``Upload.writelines``: same content type, size limit, lock claim and actor) and answer as wsgidav
does (``201 Created`` with its page, or ``204 No Content``, with the new ``ETag``).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any, BinaryIO
from urllib.parse import quote

from wsgidav.dav_error import HTTP_CREATED, DAVError
from wsgidav.lock_man.lock_manager import normalize_lock_root

from kantoor.davserver.files.context import DriveContext
from kantoor.davserver.files.direct_read import HttpDate, own_drive_path
from kantoor.davserver.files.resources import HREF_SAFE, folder_key, guessed_content_type
from kantoor.storage.drive import DrivePlace
from kantoor.storage.locks import WriteClaim
from kantoor.storage.models import Account, Item
from kantoor.storage.names import validate_item_name

Scope = dict[str, Any]
Message = dict[str, Any]


def plain_put_place(ctx: DriveContext, scope: Scope, account: Account) -> tuple[DrivePlace, str] | None:
    """The folder a plain PUT writes into and the file's name; None if wsgidav is to handle the PUT
    (not one's own drive, an invalid name, no such folder, a folder, or a live lock anywhere)."""
    path = own_drive_path(scope, account)
    if path is None:
        return None
    name = path.rpartition("/")[2]
    try:
        validate_item_name(name)
        place = ctx.store.resolve_drive_path(account.principal_id, path, account.principal_id,
                                             with_locks=True, standalone=True)
    except Exception:
        return None  # wsgidav looks again and answers the error its way
    if place.folder is not None or place.parent is None or place.locks_exist is not False:
        return None
    return place, name


def store_as_wsgidav(ctx: DriveContext, scope: Scope, account: Account, place: DrivePlace, name: str,
                     body: bytes | BinaryIO | Iterable[bytes]) -> tuple[Item, bool]:
    """The Store call wsgidav's PUT makes (``Upload.writelines``); (item, created). Raises what the Store
    raises (nothing was stored then)."""
    parent = place.parent
    assert parent is not None
    # CONTENT_TYPE as the WSGI environ has it (repeated headers joined with ",").
    declared = ",".join(value.decode("latin1") for header, value in scope["headers"]
                        if header == b"content-type") or None
    # As wsgidav's PUT: File(...).get_ref_url() as the claimed lock root.
    root = normalize_lock_root(quote(folder_key(parent) + "/" + name, safe=HREF_SAFE))
    claim = WriteClaim(root=root, principal=account.login, tokens=frozenset())
    content_type = guessed_content_type(name, declared, ctx.guess_environ())
    return ctx.store.put_item(parent.id, name, body, content_type, actor=account.principal_id,
                              max_size=ctx.settings.limits.max_upload_bytes, claim=claim)


class StoredAnswers:
    """wsgidav's answers to a PUT that stored its body: ``201 Created`` with its page, or ``204``."""

    def __init__(self) -> None:
        self.dates = HttpDate()
        self._created: tuple[str, bytes, bytes] | None = None

    def stored(self, item: Item, created: bool) -> list[Message]:
        etag = b'"' + item.etag.strip('"').encode("ascii") + b'"'
        headers: list[tuple[bytes, bytes]]
        if created:
            content_type, page = self.created_page()
            headers = [(b"content-type", content_type.encode("latin1")), (b"date", self.dates.now()),
                       (b"content-length", str(len(page)).encode("ascii")), (b"etag", etag)]
            status = 201
        else:
            page = b""
            headers = [(b"content-length", b"0"), (b"date", self.dates.now()), (b"etag", etag)]
            status = 204
        return [{"type": "http.response.start", "status": status, "headers": headers},
                {"type": "http.response.body", "body": page, "more_body": False}]

    def created_page(self) -> tuple[str, bytes]:
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


__all__ = ["StoredAnswers", "plain_put_place", "store_as_wsgidav"]
