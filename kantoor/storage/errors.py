"""Errors the Store raises; each frontend maps them to its protocol's reply."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error the Store raises on purpose."""


class NotFound(StorageError):
    """The account, group, collection or item does not exist (or is not visible)."""


class AlreadyExists(StorageError):
    """A unique name (login, collection path, item name, iCalendar UID) is taken."""


class PreconditionFailed(StorageError):
    """An If-Match / If-None-Match style condition did not hold."""


class PermissionDenied(StorageError):
    """The actor lacks the right the operation needs (raised by the ACL policy)."""

    def __init__(self, message: str, right: str = "") -> None:
        super().__init__(message)
        self.right = right


class QuotaExceeded(StorageError):
    """The write would take the owner's usage of a tool past the plan's capacity."""

    def __init__(self, tool: str, used: int, capacity: int, requested: int) -> None:
        super().__init__(
            f"{tool} capacity exceeded: {used} of {capacity} bytes used, {requested} more requested"
        )
        self.tool = tool
        self.used = used
        self.capacity = capacity
        self.requested = requested


class SendingLimitReached(StorageError):
    """Queueing a message would take the account past its hourly allowance of messages, or of recipients, on
    other servers (``unit``: "messages" or "recipients")."""

    def __init__(self, limit: int, unit: str = "messages") -> None:
        super().__init__(f"sending limit of {limit} {unit} per hour reached")
        self.limit = limit
        self.unit = unit
