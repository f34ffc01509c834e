"""The wsgidav DAVProvider of the drive: maps ``/files/<login>/a/b`` onto Store folders and items.

Namespace (paths are relative to the ``/files`` mount point):

``/``                                  the user's mount point, ``/<login>/``
``/<login>/``                          the user's drive root, the Store folder ``""`` of the account
``/<login>/a/b/``, ``/<login>/a/b/f``  the Store folder ``"a/b"``, item ``f`` in it
``/<login>/Groups/<group>/…``          the drive of a group the user belongs to (members read;
                                       the administrator and members allowed to write, write)
``/<login>/Shared with me/<name>/…``   a folder or file others shared with the user or their groups
``/<other>/Drop folder/<file>``        PUT only, for members of a group ``<other>`` is in

Everything else of another user answers 404, so a drive's existence is not revealed.
Rights are never decided here: every Store call carries the user as ``actor``.
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
from kantoor.davserver.files.locking import DatabaseLockStorage
from kantoor.davserver.files.resources import (
    GROUPS,
    MAX_FOLDER_PATH,
    SHARED,
    DriveListing,
    DriveResource,
    File,
    Folder,
    GroupsFolder,
    SharedFolder,
    shared_entries,
)
from kantoor.storage import DROP_FOLDER, NotFound
from kantoor.storage.models import Account

# XML request bodies (PROPFIND, PROPPATCH, LOCK) are read whole by wsgidav;
# no legitimate one comes near this.
MAX_XML_BODY = 1024 * 1024
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "PROPFIND", "OPTIONS"})
# environ key: resources a look-up already found on the way (see _in_tree), used once.
PRIMED_KEY = "kantoor.files.primed"
PRIMING_METHODS = frozenset({"PUT", "MKCOL", "LOCK"})
# Writes whose lock checks may be skipped when the database holds no live lock at all
# (LOCK and UNLOCK change the lock table themselves, so they always look).
LOCK_CHECKED_METHODS = frozenset({"PUT", "DELETE", "MOVE", "COPY", "MKCOL", "PROPPATCH"})


class DriveProvider(DAVProvider):
    def __init__(self, ctx: DriveContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.verbose = 1

    def __repr__(self) -> str:
        return "KantoorDriveProvider"

    def get_resource_inst(self, path: str, environ: dict) -> DriveResource | None:
        primed = environ.get(PRIMED_KEY)
        if primed and path.rstrip("/") in primed:
            return primed.pop(path.rstrip("/"))
        if environ.get("REQUEST_METHOD") not in READ_ONLY_METHODS:
            return self._resolve(path, environ)
        # wsgidav resolves the same path several times per request (browser, If headers,
        # the method itself); a request that changes nothing may reuse the first answer.
        cache = environ.setdefault("kantoor.files.resolved", {})
        if path not in cache:
            cache[path] = self._resolve(path, environ)
        return cache[path]

    def _resolve(self, path: str, environ: dict) -> DriveResource | None:
        account = request_account(environ)
        if account is None:
            return None
        parts = [p for p in path.split("/") if p]
        if not parts:
            return DriveListing("/", environ)
        with store_errors():
            if parts[0].startswith("~"):
                # A lock key (wsgidav resolves a lock's root to show DAV:lockroot).
                user_path = self._path_of_lock_key(parts, account)
                return self._resolve(user_path, environ) if user_path is not None else None
            if parts[0].lower() != account.login.lower():
                return self._others_drop_folder(parts, environ, account)
            # Canonical spelling of the drive segment, so hrefs and lock keys agree.
            base, rest = "/" + account.login, parts[1:]
            if rest and rest[0] == GROUPS:
                return self._group_drive(base + "/" + GROUPS, rest[1:], environ, account)
            if rest and rest[0] == SHARED:
                return self._shared_with_me(base + "/" + SHARED, rest[1:], environ, account)
            return self._in_tree(base, account.principal_id, "", rest, environ, account, mount_root=True)

    def _path_of_lock_key(self, parts: list[str], account: Account) -> str | None:
        """The URL path under which ``account`` reaches the resource of a lock key ``/~<owner>/<path>``."""
        try:
            owner = int(parts[0][1:])
        except ValueError:
            return None
        path = "/".join(parts[1:])
        if owner == account.principal_id:
            return f"/{account.login}/{path}"
        for name, group in self.ctx.store.drive_groups(account.principal_id):
            if group == owner:
                return f"/{account.login}/{GROUPS}/{name}/{path}"
        for name, entry in shared_entries(self.ctx.store, account.principal_id):
            if entry.collection.owner_id != owner:
                continue
            base = entry.collection.path
            if entry.item is not None:
                if path == "/".join(p for p in (base, entry.item.name) if p):
                    return f"/{account.login}/{SHARED}/{name}"
            elif not base or path == base or path.startswith(base + "/"):
                return f"/{account.login}/{SHARED}/{name}/{path[len(base):].lstrip('/')}"
        other = self.ctx.store.get_account_by_principal(owner)
        return f"/{other.login}/{path}" if other is not None else None

    def _group_drive(self, base: str, rest: list[str], environ: dict, account: Account) -> DriveResource | None:
        if not rest:
            return GroupsFolder(base, environ)
        owner = dict(self.ctx.store.drive_groups(account.principal_id)).get(rest[0])
        if owner is None:
            return None
        return self._in_tree(base + "/" + rest[0], owner, "", rest[1:], environ, account)

    def _shared_with_me(self, base: str, rest: list[str], environ: dict, account: Account) -> DriveResource | None:
        if not rest:
            return SharedFolder(base, environ)
        entry = dict(shared_entries(self.ctx.store, account.principal_id)).get(rest[0])
        if entry is None:
            return None
        url = base + "/" + rest[0]
        if entry.item is not None:
            return File(url, environ, entry.collection, entry.item) if len(rest) == 1 else None
        return self._in_tree(url, entry.collection.owner_id, entry.collection.path, rest[1:], environ, account)

    def _in_tree(self, base: str, owner: int, base_path: str, rest: list[str], environ: dict, account: Account,
                 mount_root: bool = False) -> Folder | File | None:
        """The folder or file ``rest`` below the folder ``base_path`` of ``owner``'s drive, at URL ``base``."""
        url = "/".join([base, *rest])
        folder_path = "/".join(p for p in [base_path, *rest] if p)
        if len(folder_path) > MAX_FOLDER_PATH:
            return None
        method = environ.get("REQUEST_METHOD")
        with_locks = method in LOCK_CHECKED_METHODS
        # A PUT decides again in its write transaction (locks, existence, rights), so its look-up
        # needs no snapshot shared with the request's other reads (see Store.resolve_drive_path).
        place = self.ctx.store.resolve_drive_path(owner, folder_path, account.principal_id, with_locks=with_locks,
                                                  standalone=method == "PUT")
        if place.locks_exist is False:
            self._no_live_locks()
        if place.folder is not None:
            return Folder(url, environ, place.folder, mount_root=mount_root and not rest)
        if not rest or place.parent is None:
            return None
        parent_url = "/".join([base, *rest[:-1]])
        parent = Folder(parent_url, environ, place.parent, mount_root=mount_root and len(rest) == 1)
        if environ.get("REQUEST_METHOD") in PRIMING_METHODS:
            # wsgidav's next question about a file (new or not) is its folder: answer
            # it from this look-up (once: a later write may change what a path names).
            environ.setdefault(PRIMED_KEY, {})[parent_url] = parent
        if place.item is None:
            return None
        return File(url, environ, place.parent, place.item)

    def _others_drop_folder(self, parts: list[str], environ: dict, account: Account) -> Folder | None:
        """``/<login>/Drop folder/`` of another account: fellow group members may add files, nothing more."""
        if len(parts) not in (2, 3) or parts[1] != DROP_FOLDER:
            return None
        store = self.ctx.store
        other = store.get_account(parts[0])
        if other is None:
            return None
        try:
            drop = store.find_folder(other.principal_id, DROP_FOLDER, account.principal_id, right="bind")
        except NotFound:
            return None
        method = environ.get("REQUEST_METHOD", "")
        if method not in ("PUT", "OPTIONS"):
            raise DAVError(HTTP_FORBIDDEN, "You may put files into this Drop folder, but not list, read, "
                                           "replace or delete anything in it")
        if len(parts) == 3:
            return None  # the new file: PUT creates it through the folder (Folder.create_empty_resource)
        return Folder(f"/{other.login}/{DROP_FOLDER}", environ, drop, drop_only=True)

    def custom_request_handler(self, environ: dict, start_response: Callable[..., Any],
                               default_handler: Callable[..., Iterable[bytes]]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        if method == "PROPFIND" and environ.get("HTTP_DEPTH", "infinity").strip().lower() == "infinity":
            # A Depth: infinity PROPFIND walks the whole drive in one request;
            # RFC 4918 §9.1 lets a server refuse it with this precondition.
            raise DAVError(HTTP_FORBIDDEN, "PROPFIND with Depth: infinity is not supported",
                           err_condition=PRECONDITION_CODE_PropfindFiniteDepth)
        if method == "LOCK":
            self._check_may_lock(environ)
        if method != "PUT":
            length = environ.get("CONTENT_LENGTH", "").strip()
            if length:
                if not length.isdigit():
                    raise DAVError(HTTP_BAD_REQUEST, "Invalid Content-Length")
                if int(length) > MAX_XML_BODY:
                    raise DAVError(HTTP_REQUEST_ENTITY_TOO_LARGE, "Request body too large")
        if method == "PROPFIND":
            try:
                # The body is built inside the handler, so the prefetched locks end with it.
                return default_handler(environ, start_response)
            finally:
                self._end_prefetch()
        return default_handler(environ, start_response)

    def prefetch_locks(self, root: str) -> None:
        """Read every lock below ``root`` once for this PROPFIND (see DatabaseLockStorage.prefetch)."""
        storage = getattr(self.lock_manager, "storage", None)
        if isinstance(storage, DatabaseLockStorage):
            storage.prefetch(root)

    def _end_prefetch(self) -> None:
        storage = getattr(self.lock_manager, "storage", None)
        if isinstance(storage, DatabaseLockStorage):
            storage.end_request()

    def _no_live_locks(self) -> None:
        """This request's look-up found no live lock in the database: its lock checks need no query."""
        storage = getattr(self.lock_manager, "storage", None)
        if isinstance(storage, DatabaseLockStorage):
            storage.assume_no_locks()

    def end_request(self) -> None:
        """Forget what this thread's request learnt about locks (called when the request ends)."""
        self._end_prefetch()

    def _check_may_lock(self, environ: dict) -> None:
        """LOCK blocks every other writer, so it needs the right to write (not just to read) the resource."""
        resource = self.get_resource_inst(environ.get("PATH_INFO", ""), environ)
        if isinstance(resource, DriveListing):
            raise DAVError(HTTP_FORBIDDEN, "The list of drives cannot be locked")
        if isinstance(resource, (Folder, File)) and "write" not in resource.rights():
            raise DAVError(HTTP_FORBIDDEN, "You may read this resource but not lock it")

