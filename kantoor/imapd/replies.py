"""Store errors → tagged IMAP replies with RFC 5530 response codes, in one place."""

from __future__ import annotations

from twisted.mail.imap4 import ReadOnlyMailbox
from twisted.python.failure import Failure

from kantoor.storage import AlreadyExists, BlobTooLarge, NotFound, PermissionDenied, QuotaExceeded


class Refused(Exception):
    """A command refused with ``NO [code] text`` (raised from argument parsing or command code)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text

    def line(self) -> bytes:
        return f"[{self.code}] {self.text}".encode("ascii", "replace")


def refusal(failure: Failure | BaseException) -> Refused | None:
    """The NO reply for an expected error, or None for a bug (the caller answers BAD and logs it)."""
    error = failure.value if isinstance(failure, Failure) else failure
    if isinstance(error, Refused):
        return error
    if isinstance(error, QuotaExceeded):
        return Refused("OVERQUOTA", f"{error.tool} storage of your plan is full")
    if isinstance(error, PermissionDenied):
        return Refused("NOPERM", "you do not have the right to do that")
    if isinstance(error, NotFound):
        return Refused("NONEXISTENT", "no such mailbox")
    if isinstance(error, AlreadyExists):
        return Refused("ALREADYEXISTS", "mailbox already exists")
    if isinstance(error, BlobTooLarge):
        return Refused("TOOBIG", "message is larger than the server accepts")
    if isinstance(error, ReadOnlyMailbox):
        return Refused("CANNOT", "mailbox is selected read-only")
    if isinstance(error, ValueError):
        return Refused("CANNOT", str(error) or "invalid request")
    return None
