"""WebDAV locks (RFC 4918 §6, §7) in the database, so every server process honours the same locks.

A lock is keyed by the URL path it covers (``root``, e.g. ``/ann@example.org/a/b``),
not by a collection or item: RFC 4918 locks a URL, and LOCK may create the resource
it names (§7.3). Depth-infinity locks cover every path below ``root``.

The frontend decides whether the principal may write the resource before it asks
for a lock; these operations only keep the lock table consistent:
:meth:`LocksMixin.acquire_lock` checks for conflicting locks and inserts the new one
in ONE serialised transaction, so two processes cannot both grant conflicting locks.
Expired locks are invisible to every read and removed by the next write that meets
them (and by :meth:`LocksMixin.purge_expired_locks`).
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, bindparam, delete, or_, select, text
from sqlalchemy.orm import Session

from kantoor.storage.errors import StorageError
from kantoor.storage.models import Lock, utcnow
from kantoor.storage.transactions import StoreBase

# Longest lock lifetime granted: a client asking for more (or "Infinite") gets this
# (RFC 4918 §10.7 lets the server choose); an abandoned lock frees itself within a day.
MAX_LOCK_SECONDS = 24 * 3600
DEFAULT_LOCK_SECONDS = 3600
# Any constant: the key of the PostgreSQL advisory lock that serialises lock grants.
_ADVISORY_KEY = 0x6B616E746C6F636B  # "kantlock"


class LockConflict(StorageError):
    """Granting the lock would conflict with existing locks; ``roots`` are their URL paths."""

    def __init__(self, roots: Sequence[str]) -> None:
        super().__init__("locked: " + ", ".join(roots))
        self.roots = list(roots)


def lock_ancestors(root: str) -> list[str]:
    """``root`` and every path above it: ``/a/b`` → ``["/a/b", "/a", "/"]``."""
    parts = [p for p in root.split("/") if p]
    return ["/" + "/".join(parts[:n]) for n in range(len(parts), -1, -1)]


def normalize_root(root: str) -> str:
    return "/" + root.strip("/")


def _lifetime(timeout: int | None) -> int:
    if timeout is None:
        return DEFAULT_LOCK_SECONDS
    if timeout <= 0 or timeout > MAX_LOCK_SECONDS:
        return MAX_LOCK_SECONDS
    return int(timeout)


# Every write (PUT, DELETE, MOVE …) reads the locks on its path and its ancestors, so
# these statements are built once (building a select costs more than running it).
_LOCKS_ON = (select(Lock).where(Lock.expires_at > bindparam("now"), Lock.root.in_(bindparam("roots", expanding=True)))
             .order_by(Lock.created_at))
_LOCKS_BELOW = (select(Lock).where(Lock.expires_at > bindparam("now"),
                                   Lock.root.like(bindparam("pattern"), escape="\\")).order_by(Lock.created_at))


@dataclass(frozen=True)
class WriteClaim:
    """A write's standing against the locks on its path: checked again inside the write's own transaction.

    wsgidav checks the locks when a PUT starts and marks the URL as being written until
    the body is in, so that a LOCK meanwhile is refused (CWE-367). That marker lives in
    one process: a LOCK granted by another server process while the body was still
    arriving is found here instead, and the write is refused (423) rather than
    overwriting a resource someone else now holds.
    """

    root: str  # the URL path written (as the lock manager normalises it)
    principal: str
    tokens: frozenset[str] = frozenset()


@functools.lru_cache(maxsize=128)  # one per number of paths in use (a path's depth, a group's paths)
def _claim_locks(roots: int) -> Select:
    """The live locks on ``roots`` given paths (parameters ``now``, ``r0`` … ``r<roots-1>``), only the
    columns the check needs: this runs inside every claimed write's transaction. One statement per
    path depth, each compiled once: an expanding IN is rendered anew at every execution (a sixth of
    a small PUT's write transaction, cProfile)."""
    return select(Lock.root, Lock.depth, Lock.principal, Lock.token).where(
        Lock.expires_at > bindparam("now"), Lock.root.in_([bindparam(f"r{n}") for n in range(roots)]))


def check_write_claim(s: Session, claim: WriteClaim, creating: bool, is_sqlite: bool) -> None:
    """Raise :class:`LockConflict` if a live lock forbids ``claim`` (RFC 4918 §7.4, §7.5): one on the
    resource itself, a depth-infinity one above it, or, for a new member, one on its parent folder."""
    check_write_claims(s, [(claim, creating)], is_sqlite)


def check_write_claims(s: Session, claims: Sequence[tuple[WriteClaim, bool]], is_sqlite: bool) -> None:
    """:func:`check_write_claim` for several (claim, creating) writes of one transaction (a group of PUTs)
    with one statement: the live locks on the paths of all of them and their ancestors."""
    if not is_sqlite:
        # Shared with other writes, exclusive with lock grants (acquire_lock): a LOCK that
        # committed before this statement is seen, and one still deciding waits for this write.
        s.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _ADVISORY_KEY})
    checks = []
    wanted: dict[str, None] = {}  # every path looked at, once, in a fixed order
    for claim, creating in claims:
        root = normalize_root(claim.root)
        ancestors = lock_ancestors(root)
        checks.append((claim, root, ancestors[1] if creating and len(ancestors) > 1 else None))
        wanted.update(dict.fromkeys(ancestors))
    parameters: dict[str, object] = {f"r{n}": ancestor for n, ancestor in enumerate(wanted)}
    parameters["now"] = utcnow()
    locks = s.connection().execute(_claim_locks(len(wanted)), parameters).all()
    if not locks:
        return
    for claim, root, parent in checks:
        covering = lock_ancestors(root)
        conflicts = [
            lock_root for lock_root, depth, principal, token in locks
            if lock_root in covering and (lock_root == root or depth == "infinity" or lock_root == parent)
            and not (principal == claim.principal and token in claim.tokens)]
        if conflicts:
            raise LockConflict(sorted(set(conflicts)))


def _below_pattern(root: str) -> str:
    """A LIKE pattern for the paths strictly below ``root``."""
    prefix = normalize_root(root).rstrip("/") + "/"
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class LocksMixin(StoreBase):
    def _live_locks(self, s: Session, *conditions) -> list[Lock]:  # type: ignore[no-untyped-def]
        return list(s.scalars(select(Lock).where(Lock.expires_at > utcnow(), *conditions).order_by(Lock.created_at)))

    def acquire_lock(self, root: str, *, scope: str, depth: str, principal: str, owner: str = "",
                     timeout: int | None = None) -> Lock:
        """Grant a write lock on ``root`` or raise :class:`LockConflict`.

        Conflicts (RFC 4918 §6.1, §7): a lock on ``root`` itself, a depth-infinity lock
        on a path above it, or (for a depth-infinity request) a lock below it — unless
        both are shared. ``timeout`` in seconds (None: default, <=0: as long as allowed).
        """
        if scope not in ("exclusive", "shared"):
            raise ValueError(f"lock scope is exclusive or shared, not {scope!r}")
        if depth not in ("0", "infinity"):
            raise ValueError(f"lock depth is 0 or infinity, not {depth!r}")
        root = normalize_root(root)
        lifetime = _lifetime(timeout)
        with self.write() as s:
            if not self._is_sqlite:
                # SQLite write transactions are already serialised (BEGIN IMMEDIATE);
                # on PostgreSQL, check-then-insert must not interleave with another process's.
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_KEY})
            s.execute(delete(Lock).where(Lock.expires_at <= utcnow()))
            ancestors = lock_ancestors(root)
            conditions = [Lock.root == root,
                          (Lock.root.in_(ancestors[1:])) & (Lock.depth == "infinity")]
            if depth == "infinity":
                conditions.append(Lock.root.startswith(root.rstrip("/") + "/", autoescape=True))
            conflicts = [lock.root for lock in s.scalars(select(Lock).where(or_(*conditions)))
                         if not (lock.scope == "shared" and scope == "shared")]
            if conflicts:
                raise LockConflict(sorted(set(conflicts)))
            now = utcnow()
            lock = Lock(token="opaquelocktoken:" + secrets.token_hex(32), root=root, scope=scope, type="write",
                        depth=depth, owner=owner, principal=principal, timeout_seconds=lifetime,
                        expires_at=now + dt.timedelta(seconds=lifetime), created_at=now)
            s.add(lock)
            s.flush()
            return lock

    def get_lock(self, token: str) -> Lock | None:
        """The live lock with this token, or None (unknown or expired)."""
        with self.read() as s:
            found = self._live_locks(s, Lock.token == token)
            return found[0] if found else None

    def refresh_lock(self, token: str, timeout: int | None = None) -> Lock | None:
        """Restart a live lock's timeout (RFC 4918 §9.10.2); None if the lock is gone."""
        lifetime = _lifetime(timeout)
        with self.write() as s:
            lock = s.get(Lock, token)
            if lock is None or lock.expires_at <= utcnow():
                return None
            lock.timeout_seconds = lifetime
            lock.expires_at = utcnow() + dt.timedelta(seconds=lifetime)
            s.flush()
            return lock

    def release_lock(self, token: str) -> bool:
        """Remove a lock (UNLOCK); False if there was no live lock with this token."""
        with self.write() as s:
            lock = s.get(Lock, token)
            if lock is None:
                return False
            live = lock.expires_at > utcnow()
            s.delete(lock)
            return live

    def locks_on(self, roots: Sequence[str]) -> list[Lock]:
        """Live locks whose root is one of ``roots`` (a path and its ancestors in one query)."""
        if not roots:
            return []
        with self.read() as s:
            return list(s.scalars(_LOCKS_ON, {"now": utcnow(), "roots": [normalize_root(r) for r in roots]}))

    def locks_below(self, root: str) -> list[Lock]:
        """Live locks on paths strictly below ``root``."""
        with self.read() as s:
            return list(s.scalars(_LOCKS_BELOW, {"now": utcnow(), "pattern": _below_pattern(root)}))

    def release_locks_at(self, root: str, recursive: bool = False) -> int:
        """Remove the locks on ``root`` (and below it if ``recursive``): the resource is gone or moved."""
        root = normalize_root(root)
        condition = Lock.root == root
        if recursive:
            condition = or_(condition, Lock.root.startswith(root.rstrip("/") + "/", autoescape=True))
        with self.write() as s:
            return s.execute(delete(Lock).where(condition)).rowcount or 0

    def purge_expired_locks(self) -> int:
        with self.write() as s:
            return s.execute(delete(Lock).where(Lock.expires_at <= utcnow())).rowcount or 0
