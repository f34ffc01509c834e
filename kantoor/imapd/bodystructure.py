"""BODY and BODYSTRUCTURE (RFC 3501 7.4.2) computed from the raw MIME tree.

Twisted's version reports part sizes including the part's headers, lower-cases
parameter values (boundaries are case-sensitive) and sends NIL where the RFC
wants a string (encoding), which strict clients reject; this one follows the RFC.
"""

from __future__ import annotations

import email.utils
from typing import Any

from twisted.mail.imap4 import getEnvelope

from kantoor.imapd.message import MimePart


def _ascii(value: str) -> str:
    return value.encode("ascii", "replace").decode("ascii")


def _params(part: MimePart, header: str) -> list[str] | None:
    params = part.headers.get_params(header=header)
    if not params:
        return None
    flat: list[str] = []
    for name, value in params[1:]:  # the first entry is the value itself (e.g. "text/plain")
        if isinstance(value, tuple):
            value = email.utils.collapse_rfc2231_value(value)
        flat += [_ascii(name.upper()), _ascii(str(value))]
    return flat or None


def _header(part: MimePart, name: str) -> str | None:
    return part.getHeaders(False, name).get(name)


def _extension(part: MimePart) -> list[Any]:
    disposition = part.headers.get_content_disposition()
    disp = [disposition.upper(), _params(part, "content-disposition")] if disposition else None
    return [_header(part, "content-md5"), disp, _header(part, "content-language"), _header(part, "content-location")]


def body_structure(part: MimePart, extended: bool) -> list[Any]:
    """The nested list Twisted's ``collapseNestedLists`` turns into a BODYSTRUCTURE (or BODY) value."""
    headers = part.headers
    main, sub = headers.get_content_maintype(), headers.get_content_subtype()
    if main == "multipart":
        children = []
        index = 0
        while True:
            try:
                children.append(body_structure(part.getSubPart(index), extended))
            except IndexError:
                break
            index += 1
        if not children:  # RFC 3501 needs at least one part
            children.append(["TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 0, 0])
        result: list[Any] = [*children, _ascii(sub.upper())]
        if extended:
            result += [_params(part, "content-type"), *_extension(part)[1:]]
        return result
    params = _params(part, "content-type")
    if main == "text" and not params:
        params = ["CHARSET", "US-ASCII"]
    encoding = (_header(part, "content-transfer-encoding") or "7BIT").strip().upper()
    result = [_ascii(main.upper()), _ascii(sub.upper()), params, _header(part, "content-id"),
              _header(part, "content-description"), encoding, len(part.body)]
    lines = part.body.count(b"\n") + (1 if part.body and not part.body.endswith(b"\n") else 0)
    if (main, sub) == ("message", "rfc822"):
        inner = MimePart(part.body)
        result += [getEnvelope(inner), body_structure(inner, extended), lines]
    elif main == "text":
        result.append(lines)
    if extended:
        result += _extension(part)
    return result
