"""The exception every CalDAV/CardDAV precondition failure travels as (answered in ``errors``)."""

from __future__ import annotations


class DavPrecondition(Exception):
    """A request broke a CalDAV/CardDAV precondition; answered with ``status`` and the XML element."""

    def __init__(self, status: int, precondition: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.precondition = precondition
