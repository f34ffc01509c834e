"""The wsgidav DAVProvider of the drive: maps ``/files/<login>/a/b`` onto Store folders and items.

Namespace (paths are relative to the ``/files`` mount point):

``/``                 the drives the user can reach (for now: only their own)
``/<login>/``         the user's drive root, the Store folder ``""`` of the account
``/<login>/a/b/``     the Store folder ``"a/b"``
``/<login>/a/b/f``    item ``f`` in folder ``"a/b"``

Another user's tree answers 404, so a drive's existence is not revealed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_FORBIDDEN,
    HTTP_REQUEST_ENTITY_TOO_LARGE,
    DAVError,
    PRECONDITION_CODE_PropfindFiniteDepth,
)
from wsgidav.dav_provider import DAVProvider

from kantoor.davserver.files.context import DriveContext, request_account
from kantoor.davserver.files.errors import store_errors
from kantoor.davserver.files.resources import MAX_FOLDER_PATH, DriveListing, File, Folder
from kantoor.storage import NotFound
from kantoor.storage.models import Account

# XML request bodies (PROPFIND, PROPPATCH, LOCK) are read whole by wsgidav;
# no legitimate one comes near this.
MAX_XML_BODY = 1024 * 1024


class DriveProvider(DAVProvider):
    def __init__(self, ctx: DriveContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.verbose = 1

    def __repr__(self) -> str:
        return "KantoorDriveProvider"

    def drive_owner(self, segment: str, account: Account) -> int | None:
        """The principal whose drive ``/files/<segment>/`` is, if this account may open it."""
        if segment.lower() == account.login.lower():
            return account.principal_id
        return None  # group drives and "Shared with me" come later

    def get_resource_inst(self, path: str, environ: dict) -> DriveListing | Folder | File | None:
        account = request_account(environ)
        if account is None:
            return None
        parts = [p for p in path.split("/") if p]
        if not parts:
            return DriveListing("/", environ)
        owner = self.drive_owner(parts[0], account)
        if owner is None:
            return None
        # Canonical spelling of the drive segment, so hrefs and lock keys agree.
        parts[0] = account.login
        url = "/" + "/".join(parts)
        folder_path = "/".join(parts[1:])
        if len(folder_path) > MAX_FOLDER_PATH:
            return None
        store, actor = self.ctx.store, account.principal_id
        with store_errors():
            try:
                return Folder(url, environ, store.find_collection(owner, "folder", folder_path, actor))
            except NotFound:
                pass
            if len(parts) < 2:
                return None
            try:
                parent = store.find_collection(owner, "folder", "/".join(parts[1:-1]), actor)
                item = store.get_item(parent.id, parts[-1], actor)
            except NotFound:
                return None
        return File(url, environ, parent, item)

    def custom_request_handler(self, environ: dict, start_response: Callable[..., Any],
                               default_handler: Callable[..., Iterable[bytes]]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        if method == "PROPFIND" and environ.get("HTTP_DEPTH", "infinity").strip().lower() == "infinity":
            # A Depth: infinity PROPFIND walks the whole drive in one request;
            # RFC 4918 §9.1 lets a server refuse it with this precondition.
            raise DAVError(HTTP_FORBIDDEN, "PROPFIND with Depth: infinity is not supported",
                           err_condition=PRECONDITION_CODE_PropfindFiniteDepth)
        if method != "PUT":
            length = environ.get("CONTENT_LENGTH", "").strip()
            if length:
                if not length.isdigit():
                    raise DAVError(HTTP_BAD_REQUEST, "Invalid Content-Length")
                if int(length) > MAX_XML_BODY:
                    raise DAVError(HTTP_REQUEST_ENTITY_TOO_LARGE, "Request body too large")
        return default_handler(environ, start_response)
