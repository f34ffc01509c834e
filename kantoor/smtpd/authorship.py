"""Who a submitted message says it is from: the addresses of its From: and Sender: fields.

On submission the envelope sender must be one of the account's own addresses (checked at MAIL),
and so must every address the message shows as its author: the From: field's mailboxes and the
Sender: field's (RFC 5322 section 3.6.2), or a user could send mail that reads as from anyone,
signed with this server's DKIM key. The fields are parsed by the email package's header
registry (display names, comments, RFC 2047 encoded words, UTF-8 addresses); what it cannot
read as an address does not pass.
"""

from __future__ import annotations

from email.errors import HeaderParseError, NonASCIILocalPartDefect
from email.parser import HeaderParser
from email.policy import SMTPUTF8

from kantoor.smtpd.header_completion import header_end

_PARSER = HeaderParser(policy=SMTPUTF8)


class Authors:
    """The author addresses of a message: ``addresses`` (lower case, in order, no repeats), or ``unreadable``
    naming a field with something in it that is not a plain address (a group, garbage)."""

    def __init__(self, addresses: list[str], unreadable: str = "") -> None:
        self.addresses = addresses
        self.unreadable = unreadable


def authors(content: bytes) -> Authors:
    """The addresses in the From: and Sender: fields of ``content``'s header section."""
    header = content[:header_end(content)].decode("utf-8", "surrogateescape")
    message = _PARSER.parsestr(header)
    found: list[str] = []
    for name in ("From", "Sender"):
        for field in message.get_all(name, []):
            try:
                groups = field.groups
            except (HeaderParseError, AttributeError, IndexError, ValueError):
                return Authors(found, name)
            # A group ("undisclosed:;") or a field the parser had to guess at is no author; a UTF-8 local part
            # is one (RFC 6532), which the parser notes as a defect of its own.
            defects = [d for d in getattr(field, "defects", ()) if not isinstance(d, NonASCIILocalPartDefect)]
            if defects or any(group.display_name is not None for group in groups):
                return Authors(found, name)
            for group in groups:
                for address in group.addresses:
                    spec = address.addr_spec.lower()
                    if not address.username or not address.domain:
                        return Authors(found, name)
                    if spec not in found:
                        found.append(spec)
    return Authors(found)


__all__ = ["Authors", "authors"]
