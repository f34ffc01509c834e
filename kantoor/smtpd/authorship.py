"""Who a submitted message says it is from: the addresses of its From: and Sender: fields.

On submission the envelope sender must be one of the account's own addresses (checked at MAIL),
and so must every address the message shows as its author: the From: field's mailboxes and the
Sender: field's (RFC 5322 section 3.6.2), or a user could send mail that reads as from anyone,
signed with this server's DKIM key. The fields are parsed by the email package's header
registry (display names, comments, RFC 2047 encoded words, UTF-8 addresses); what it cannot
read as an address does not pass, nor does a From: or Sender: field with no address at all.
Resent-From: and Resent-Sender: (RFC 5322 section 3.6.6, the authors of a resent message,
which some clients show) are held to the same rule.

Before that, every line of the header section must be a field (``name:`` with the name in
printable ASCII, no blank before the colon) or a field's continuation (:func:`odd_header_line`):
``From : x``, ``From\t: x`` or a line without a colon in the header are read as a From field by
some readers and skipped by others (Python's parser, dkimpy, this server's IMAP ENVELOPE), so an
author check that skipped them could be passed by a forged From the recipient's client shows.
A mail client never writes such lines; the MSA refuses them (RFC 6409 section 8 lets it).
"""

from __future__ import annotations

import re
from email.errors import HeaderParseError, NonASCIILocalPartDefect
from email.parser import HeaderParser
from email.policy import SMTPUTF8

from kantoor.smtpd.header_completion import header_end

_PARSER = HeaderParser(policy=SMTPUTF8)
_AUTHOR_FIELDS = ("From", "Sender", "Resent-From", "Resent-Sender")
# RFC 5322 section 3.6.8: a field name is printable ASCII but the colon, and the colon follows it at once.
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")


def odd_header_line(content: bytes) -> int | None:
    """The number (from 1) of the first header line of ``content`` that is neither a field nor the continuation
    of one, or None if there is none."""
    lines = content[:header_end(content)].split(b"\r\n")
    for number, line in enumerate(lines[:-1], start=1):  # the last piece is what follows the final CRLF: b""
        if line[:1] in (b" ", b"\t") and number > 1:
            continue
        if not _FIELD.match(line):
            return number
    return None


class Authors:
    """The author addresses of a message: ``addresses`` (lower case, in order, no repeats), or ``unreadable``
    naming a field with something in it that is not a plain address (a group, garbage)."""

    def __init__(self, addresses: list[str], unreadable: str = "") -> None:
        self.addresses = addresses
        self.unreadable = unreadable


def authors(content: bytes) -> Authors:
    """The addresses in the From:, Sender:, Resent-From: and Resent-Sender: fields of ``content``'s header
    section (whose lines :func:`odd_header_line` found in order)."""
    header = content[:header_end(content)].decode("utf-8", "surrogateescape")
    message = _PARSER.parsestr(header)
    found: list[str] = []
    for name in _AUTHOR_FIELDS:
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
            if not any(group.addresses for group in groups):
                return Authors(found, name)  # an empty field: no author at all
            for group in groups:
                for address in group.addresses:
                    spec = address.addr_spec.lower()
                    if not address.username or not address.domain:
                        return Authors(found, name)
                    if spec not in found:
                        found.append(spec)
    return Authors(found)


__all__ = ["Authors", "authors", "odd_header_line"]
