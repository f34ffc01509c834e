"""Store errors → HTTP statuses for the drive (one mapping, used by every resource method)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from wsgidav.dav_error import (
    ERROR_DESCRIPTIONS,
    HTTP_BAD_REQUEST,
    HTTP_FORBIDDEN,
    HTTP_INSUFFICIENT_STORAGE,
    HTTP_LOCKED,
    HTTP_METHOD_NOT_ALLOWED,
    HTTP_NOT_FOUND,
    HTTP_PRECONDITION_FAILED,
    HTTP_REQUEST_ENTITY_TOO_LARGE,
    DAVError,
    DAVErrorCondition,
    PRECONDITION_CODE_LockConflict,
)

from kantoor.storage import (
    AlreadyExists,
    BlobTooLarge,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
)
from kantoor.storage.locks import LockConflict

# wsgidav only names the statuses it raises itself; without these the status
# line would read "507 Status".
ERROR_DESCRIPTIONS.setdefault(HTTP_REQUEST_ENTITY_TOO_LARGE, "413 Payload Too Large")
ERROR_DESCRIPTIONS.setdefault(HTTP_INSUFFICIENT_STORAGE, "507 Insufficient Storage")


def lock_conflict(roots: list[str]) -> DAVErrorCondition:
    """423's body (RFC 4918 §9.10.6 lock-token-submitted / no-conflicting-lock) naming the locks in the way."""
    condition = DAVErrorCondition(PRECONDITION_CODE_LockConflict)
    for root in dict.fromkeys(roots):
        condition.add_href(root)
    return condition


def as_dav_error(exc: BaseException) -> DAVError | None:
    """The DAVError for a Store error, or None when ``exc`` is not one we map."""
    if isinstance(exc, DAVError):
        return exc
    if isinstance(exc, LockConflict):
        # Locked by another process while this write's body was arriving (storage.locks.WriteClaim).
        return DAVError(HTTP_LOCKED, err_condition=lock_conflict(exc.roots))
    if isinstance(exc, QuotaExceeded):
        return DAVError(HTTP_INSUFFICIENT_STORAGE, f"Your drive is full: {exc}")
    if isinstance(exc, BlobTooLarge):
        return DAVError(HTTP_REQUEST_ENTITY_TOO_LARGE, "The file is larger than this server accepts.")
    if isinstance(exc, PermissionDenied):
        return DAVError(HTTP_FORBIDDEN, str(exc))
    if isinstance(exc, NotFound):
        return DAVError(HTTP_NOT_FOUND, str(exc))
    if isinstance(exc, PreconditionFailed):
        return DAVError(HTTP_PRECONDITION_FAILED, str(exc))
    if isinstance(exc, AlreadyExists):
        # MKCOL on a mapped URL is 405 (RFC 4918 §9.3.1); a racing create ends here.
        return DAVError(HTTP_METHOD_NOT_ALLOWED, str(exc))
    if isinstance(exc, ValueError):
        # The Store refuses invalid names with ValueError.
        return DAVError(HTTP_BAD_REQUEST, str(exc))
    return None


@contextmanager
def store_errors() -> Iterator[None]:
    """Re-raise Store errors as the DAVError wsgidav turns into the right response."""
    try:
        yield
    except DAVError:
        raise
    except Exception as exc:
        mapped = as_dav_error(exc)
        if mapped is None:
            raise
        raise mapped from None


__all__ = ["as_dav_error", "lock_conflict", "store_errors"]
