"""Is this an RFC 5321 mailbox? (section 4.1.2, with RFC 6531's UTF-8 when SMTPUTF8 was given).

aiosmtpd parses addresses with the RFC 5322 header parser, which accepts forms an
SMTP envelope may not carry (no domain, empty labels, comments); this is the
envelope grammar: ``Local-part "@" ( Domain / address-literal )``, with the size
limits of section 4.5.3.1. One leniency, as in other MTAs: dots anywhere in an
unquoted local part ("a..b", "name.") — such addresses exist (older mobile
carriers handed them out) and refusing them loses real mail.
"""

from __future__ import annotations

import ipaddress
import re

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]"
_UTEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"  # RFC 6531 section 3.3: atext / UTF8-non-ascii
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_QUOTED_UTF8 = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"'
_LOCAL = re.compile(rf"^(?:(?:{_ATEXT}|\.)+|{_QUOTED})$")
_LOCAL_UTF8 = re.compile(rf"^(?:(?:{_UTEXT}|\.)+|{_QUOTED_UTF8})$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")
_LABEL_UTF8 = re.compile(r"^[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\u0080-\U0010ffff-]*"
                         r"[A-Za-z0-9\u0080-\U0010ffff])?$")

MAX_LOCAL_PART = 64  # RFC 5321 section 4.5.3.1.1
MAX_DOMAIN = 255  # section 4.5.3.1.2
MAX_PATH = 256  # section 4.5.3.1.3, angle brackets included


def _domain_ok(domain: str, utf8: bool) -> bool:
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        try:
            if literal[:5].lower() == "ipv6:":
                ipaddress.IPv6Address(literal[5:])
            else:
                ipaddress.IPv4Address(literal)
        except ValueError:
            return False
        return True
    if not domain or len(domain) > MAX_DOMAIN:
        return False
    label = _LABEL_UTF8 if utf8 else _LABEL
    return all(len(part) <= 63 and label.match(part) for part in domain.split("."))


def is_mailbox(address: str, utf8: bool = False) -> bool:
    """True if ``address`` (without angle brackets) is an RFC 5321 Mailbox."""
    if len(address) + 2 > MAX_PATH:
        return False
    local, at, domain = address.rpartition("@")
    if not at or not local or len(local.encode("utf-8", "surrogateescape")) > MAX_LOCAL_PART:
        return False
    pattern = _LOCAL_UTF8 if utf8 else _LOCAL
    return bool(pattern.match(local)) and _domain_ok(domain, utf8)


_SOURCE_ROUTE = re.compile(r"^@[^:<>]*:")


def untagged(address: str) -> str | None:
    """``user@domain`` for a sub-address ``user+tag@domain`` (mail for it goes to ``user``), else None."""
    local, at, domain = address.rpartition("@")
    if not at or "+" not in local or local.startswith("+"):
        return None
    return f"{local.split('+', 1)[0]}@{domain}"


def path_text(arg: str) -> str:
    """The address of a ``FROM:<…>`` / ``TO:<…>`` argument exactly as sent (source route dropped,
    RFC 5321 section 4.1.1.3): aiosmtpd's RFC 5322 parser would quietly drop comments and folding."""
    rest = arg.partition(":")[2].lstrip()
    if not rest.startswith("<"):
        return rest.split(" ", 1)[0]
    quoted = escaped = False
    for index, char in enumerate(rest[1:], 1):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return _SOURCE_ROUTE.sub("", rest[1:index])
    return rest
