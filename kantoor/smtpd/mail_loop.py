"""Mail loops (RFC 5321 section 6.3): a message that has passed too many servers is refused.

A loop between mail servers — a forward that points back, two MX records that relay to each
other — would otherwise circle for ever, each pass adding one ``Received:`` field. RFC 5321
section 6.3 recommends counting those fields, with a large threshold ("normally at least
100"); ``limits.max_received_headers`` is that threshold, and a message with more fields is
refused at the end of DATA with ``554 5.4.6`` (RFC 3463: routing loop detected), before
anything is delivered or queued. The outbound side of section 5.1 (an MX that names this
server) is :func:`kantoor.smtpd.mx.mail_hosts`'s.
"""

from __future__ import annotations

import re

from kantoor.smtpd.header_completion import header_end

# A Received field: its name at the start of a header line (a folded continuation starts with a blank),
# in any case, with optional blanks before the colon (RFC 5322 section 4.5.3's obsolete syntax allows them).
_RECEIVED = re.compile(rb"(?:\A|\n)received[ \t]*:", re.IGNORECASE)


def received_count(content: bytes) -> int:
    """How many ``Received:`` fields the header section of ``content`` (up to its first empty line) has."""
    return len(_RECEIVED.findall(content, 0, header_end(content)))


def hop_limit_reply(content: bytes, limit: int) -> str | None:
    """The DATA reply refusing ``content`` if it has more than ``limit`` Received fields, else None."""
    count = received_count(content)
    if count <= limit:
        return None
    return (f"554 5.4.6 Too many hops: the message has {count} Received: header fields (more than {limit}); "
            "it is probably looping between mail servers. Nothing was delivered")


__all__ = ["hop_limit_reply", "received_count"]
