"""WebDAV locks for the drive, kept in the database through the Store (``kantoor.storage.locks``).

wsgidav's ``LockManager`` checks for conflicts and then stores the lock under a
lock that lives in this process only; two ``kantoor serve`` processes could both
grant conflicting locks that way. :class:`DatabaseLockManager` instead asks the
Store to check and insert in one serialised transaction, and reads a path's own
and inherited locks in one query rather than one per ancestor.
:class:`DatabaseLockStorage` is wsgidav's lock-storage interface on the same table
(wsgidav reads tokens, refreshes and releases through it).
"""

from __future__ import annotations

import threading
from typing import Any

from wsgidav.dav_error import (
    HTTP_LOCKED,
    HTTP_PRECONDITION_FAILED,
    DAVError,
    DAVErrorCondition,
    PRECONDITION_CODE_LockTokenMismatch,
)
from wsgidav.lock_man.lock_manager import LockManager, normalize_lock_root

from kantoor.davserver.files.errors import lock_conflict
from kantoor.storage import Store
from kantoor.storage.locks import LockConflict, lock_ancestors
from kantoor.storage.models import Lock


def lock_dict(lock: Lock) -> dict[str, Any]:
    """A Lock row in the shape wsgidav's lock manager and PROPFIND lockdiscovery use."""
    return {
        "root": lock.root,
        "type": lock.type,
        "scope": lock.scope,
        "depth": lock.depth,
        "owner": (lock.owner or "").encode("utf-8"),
        "timeout": lock.timeout_seconds,
        "expire": lock.expires_at.timestamp(),
        "principal": lock.principal,
        "token": lock.token,
    }


def _owner_text(owner: bytes | str | None) -> str:
    if isinstance(owner, bytes):
        return owner.decode("utf-8", "replace")
    return owner or ""


class DatabaseLockStorage:
    """wsgidav's lock storage interface (see ``wsgidav.lock_man.lock_storage``) on the Store.

    A PROPFIND Depth 1 asks for every member's locks (DAV:lockdiscovery); :meth:`prefetch`
    reads all locks below the folder in one query for the rest of the request (this
    thread), :meth:`end_request` forgets them.

    A write first resolves its path, and that statement also tells whether the database
    holds any live lock (``Store.resolve_drive_path(with_locks=True)``, same read snapshot
    the lock queries would use); when it holds none, :meth:`assume_no_locks` makes this
    request's lock look-ups answer "none" without a query. Granting a lock (LOCK) always
    asks the database, so no lock is ever granted or missed on that basis across processes.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._prefetched = threading.local()

    def assume_no_locks(self) -> None:
        self._prefetched.none = True

    def no_locks(self) -> bool:
        """True if this thread's request saw an empty lock table (see the class docstring)."""
        return getattr(self._prefetched, "none", False)

    def prefetch(self, root: str) -> None:
        root = normalize_lock_root(root)
        by_root: dict[str, list[Lock]] = {}
        for lock in self.store.locks_below(root):
            by_root.setdefault(lock.root, []).append(lock)
        self._prefetched.value = (root.rstrip("/") + "/", by_root)

    def end_request(self) -> None:
        self._prefetched.value = None
        self._prefetched.none = False

    def __repr__(self) -> str:
        return "DatabaseLockStorage"

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def cleanup(self) -> None:
        self.store.purge_expired_locks()

    def clear(self) -> None:
        raise NotImplementedError("locks are shared with other processes; release them one by one")

    def get(self, token: str) -> dict[str, Any] | None:
        lock = self.store.get_lock(token)
        return lock_dict(lock) if lock is not None else None

    def create(self, path: str, lock: dict[str, Any]) -> dict[str, Any]:
        self._prefetched.none = False
        created = self.store.acquire_lock(path, scope=lock["scope"], depth=lock["depth"],
                                          principal=lock["principal"], owner=_owner_text(lock.get("owner")),
                                          timeout=_timeout(lock.get("timeout")))
        lock.update(lock_dict(created))
        return lock

    def refresh(self, token: str, *, timeout: float | None) -> dict[str, Any]:
        lock = self.store.refresh_lock(token, _timeout(timeout))
        if lock is None:
            raise DAVError(HTTP_PRECONDITION_FAILED, "The lock has expired or was released",
                           err_condition=PRECONDITION_CODE_LockTokenMismatch)
        return lock_dict(lock)

    def delete(self, token: str) -> bool:
        return self.store.release_lock(token)

    def get_lock_list(self, path: str, *, include_root: bool, include_children: bool,
                      token_only: bool) -> list[Any]:
        path = normalize_lock_root(path)
        if self.no_locks():
            return []
        locks: list[Lock] = []
        prefetched = getattr(self._prefetched, "value", None)
        if include_root and not include_children and prefetched and path.startswith(prefetched[0]):
            locks = prefetched[1].get(path, [])
        elif include_root:
            locks += self.store.locks_on([path])
        if include_children:
            locks += self.store.locks_below(path)
        return [lock.token for lock in locks] if token_only else [lock_dict(lock) for lock in locks]


def _timeout(value: float | None) -> int | None:
    """wsgidav's timeout (None: none asked, -1: Infinite) → the Store's (None: default, 0: longest)."""
    if value is None:
        return None
    return 0 if value < 0 else int(value)


class DatabaseLockManager(LockManager):
    """wsgidav's LockManager with grants made atomic in the database and one query per path."""

    def __init__(self, store: Store) -> None:
        self.store = store
        super().__init__(DatabaseLockStorage(store))

    def __repr__(self) -> str:
        return "DatabaseLockManager"

    def __del__(self) -> None:
        return None

    def acquire(self, *, url: str, lock_type: str, lock_scope: str, lock_depth: str, lock_owner: bytes,
                timeout: float | None, principal: str, token_list: list[str]) -> dict[str, Any]:
        url = normalize_lock_root(url)
        # Held across the check and the insert: a writer marks its URL under this lock
        # before it looks for locks (see _begin_write_transaction), so either this LOCK
        # sees the write in progress or the writer sees the new lock.
        self.storage.end_request()  # from here on this request's look-ups ask the database
        self._lock.acquire_write()
        try:
            if self._active_writes.get(url):
                # A PUT on this URL is still receiving its body in this process.
                raise DAVError(HTTP_LOCKED, err_condition=lock_conflict([url]))
            try:
                lock = self.store.acquire_lock(url, scope=lock_scope, depth=lock_depth, principal=principal,
                                               owner=_owner_text(lock_owner), timeout=_timeout(timeout))
            except LockConflict as exc:
                raise DAVError(HTTP_LOCKED, err_condition=lock_conflict(exc.roots)) from None
        finally:
            self._lock.release()
        return lock_dict(lock)

    # wsgidav runs these two under its process-wide lock (a write lock for the second),
    # which would queue every PUT of the process behind one another's database read.
    # The database is the lock table here, so only the in-process marker needs the lock.
    def check_write_permission(self, *, url: str, depth: str, token_list: list[str], principal: str) -> None:
        condition = self._get_write_conflicts(url, depth, token_list, principal)
        if condition.hrefs:
            raise DAVError(HTTP_LOCKED, err_condition=condition)

    def _begin_write_transaction(self, *, url: str, token_list: list[str], principal: str,
                                 depth: str = "0") -> None:
        url = normalize_lock_root(url)
        self._lock.acquire_write()
        try:
            self._active_writes[url] = self._active_writes.get(url, 0) + 1
        finally:
            self._lock.release()
        try:
            self.check_write_permission(url=url, depth=depth, token_list=token_list, principal=principal)
        except BaseException:
            self._end_write_transaction(url)
            raise

    def refresh(self, token: str, *, timeout: float | None = None) -> dict[str, Any]:
        return self.storage.refresh(token, timeout=timeout)

    def get_indirect_url_lock_list(self, url: str, *, principal: str | None = None) -> list[dict[str, Any]]:
        if self.storage.no_locks():
            return []
        url = normalize_lock_root(url)
        return [lock_dict(lock) for lock in self.store.locks_on(lock_ancestors(url))
                if (lock.root == url or lock.depth == "infinity")
                and (principal is None or principal == lock.principal)]

    def remove_all_locks_from_url(self, url: str, *, recursive: bool = False) -> None:
        self.store.release_locks_at(normalize_lock_root(url), recursive=recursive)

    def _get_write_conflicts(self, url: str, depth: str, token_list: list[str], principal: str) -> DAVErrorCondition:
        """Locks that forbid ``principal`` (holding ``token_list``) to write ``url`` (RFC 4918 §7.4, §7.5)."""
        if self.storage.no_locks():
            return lock_conflict([])
        url = normalize_lock_root(url)
        conflicts = []
        for lock in self.store.locks_on(lock_ancestors(url)):
            if lock.root != url and lock.depth != "infinity":
                continue  # a depth-0 lock on a parent does not cover its members
            if lock.principal == principal and lock.token in token_list:
                continue
            conflicts.append(lock.root)
        if depth == "infinity":
            # Changing a whole tree needs the tokens of the locks inside it (§9.6.1, §9.9.2).
            conflicts += [lock.root for lock in self.store.locks_below(url)
                          if not (lock.principal == principal and lock.token in token_list)]
        return lock_conflict(conflicts)


__all__ = ["DatabaseLockManager", "DatabaseLockStorage", "lock_dict"]
