"""What the submission server adds to a message's header (RFC 6409 section 8): From, Date, Message-ID;
and the Bcc field it takes out.

RFC 5322 requires a From and a Date field (3.6.1, 3.6.2) and asks for a Message-ID (3.6.4), and
RFC 6409 sections 8.2 and 8.3 let the submission server add Date and Message-ID when the client
did not; a missing From is the envelope sender (as Postfix's cleanup adds it), which submission
has already checked to be the account's own. Scripts, cron jobs,
``mail`` and many libraries send without them, and large mail providers refuse or junk such
mail (a message without Message-ID gets "550 5.7.1 … missing a valid Message-ID header").
They are added where the header section ends, before the message is delivered locally or
queued, so every copy has the same id and DKIM signs it. Mail received as MX is never
changed this way (RFC 5321 section 6.4 leaves that to the originating side).

A Bcc field is removed (RFC 5322 section 3.6.3, its first way), and so is Resent-Bcc (section
3.6.6: the same for a resent message): every copy, the Bcc recipients' too, goes out without
it, as Gmail's and Exchange's submission servers do. Mail clients leave it out themselves,
but a script or a careless client that leaves it in would otherwise show every recipient who
the blind copies went to.
"""

from __future__ import annotations

import datetime as dt
import re
from email.utils import format_datetime, make_msgid

# A From, Date or Message-ID field at the start of a header line, in any case, optional blanks before the colon.
_PRESENT = re.compile(rb"(?:\A|\n)(from|date|message-id)[ \t]*:", re.IGNORECASE)
_BCC = re.compile(rb"(?:\A|\n)(?:resent-)?bcc:", re.IGNORECASE)


def header_end(content: bytes) -> int:
    """Where the header section of ``content`` ends: the index after its last field's CRLF (0 if there is
    no header section; the whole message if there is no empty line)."""
    if content.startswith(b"\r\n"):
        return 0
    end = content.find(b"\r\n\r\n")
    return end + 2 if end != -1 else len(content)


def completed(content: bytes, hostname: str, sender: str, now: dt.datetime | None = None) -> bytes:
    """``content`` without Bcc fields, with a From (``sender``), a Date and a Message-ID field added if its header
    section lacks them."""
    content = without_bcc(content)
    end = header_end(content)
    present = {name.lower() for name in _PRESENT.findall(content[:end])}
    added = b""
    if b"from" not in present and sender:
        added += f"From: <{sender}>\r\n".encode()
    if b"date" not in present:
        added += f"Date: {format_datetime(now or dt.datetime.now(dt.UTC))}\r\n".encode()
    if b"message-id" not in present:
        added += f"Message-ID: {make_msgid(domain=hostname)}\r\n".encode()
    if not added:
        return content
    # DATA ends every line with CRLF, so ``end`` is always just after one.
    return content[:end] + added + content[end:]


def without_bcc(content: bytes) -> bytes:
    """``content`` with every Bcc and Resent-Bcc field of its header section (continuation lines included)
    taken out."""
    end = header_end(content)
    if not _BCC.search(content, 0, end):
        return content
    kept: list[bytes] = []
    dropping = False
    for line in content[:end].split(b"\r\n")[:-1]:  # the last piece is what follows the final CRLF: b""
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line[:4].lower() == b"bcc:" or line[:11].lower() == b"resent-bcc:"
        if not dropping:
            kept.append(line)
    return b"".join(line + b"\r\n" for line in kept) + content[end:]


__all__ = ["completed", "header_end", "without_bcc"]
