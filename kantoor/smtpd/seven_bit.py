"""8-bit to 7-bit conversion for a next hop without 8BITMIME (RFC 6152 section 3).

A message whose body has 8-bit octets may only go to a server that offers
8BITMIME; for any other, each 8-bit MIME part is re-encoded: text as
quoted-printable (still readable), everything else as base64. The email
package does the MIME work. This runs before DKIM signing, so the signature
covers the bytes that are actually sent.

Header fields with raw 8-bit text (not allowed without SMTPUTF8, RFC 6532, but
common: mail clients that write UTF-8 subjects and file names as they are) are
down-converted too, by the email package's header registry: text and display
names become RFC 2047 encoded words, MIME parameters RFC 2231 ones (UTF-8, or
Latin-1 when the bytes are not UTF-8). What cannot be made 7-bit that way, an
address or message id with non-ASCII characters, or a message/partial or
message/external-body entity with 8-bit content (RFC 2046 section 5.2: only
7bit is allowed there, and re-encoding would change the fragment), fails the
conversion: the message bounces with 5.6.3 rather than going out 8-bit to a
server that did not ask for it.
"""

from __future__ import annotations

import email
import email.encoders
import quopri
import re
from email.errors import NonASCIILocalPartDefect
from email.generator import BytesGenerator
from email.message import Message
from email.policy import SMTP, compat32
from io import BytesIO

# compat32 without refolding: headers go out as they came in.
_POLICY = compat32.clone(linesep="\r\n", max_line_length=0)
_EIGHT_BIT = ("8bit", "binary")
# Entities that must be 7bit themselves (RFC 2046 sections 5.2.2.1 and 5.2.3.1).
_SEVEN_BIT_ONLY = ("message/partial", "message/external-body")
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")


class ConversionFailed(Exception):
    """The message cannot be made 7-bit (RFC 3463 X.6.3: conversion required but not supported)."""


def _reencode(part: Message) -> None:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return
    del part["Content-Transfer-Encoding"]
    if part.get_content_maintype() == "text":
        # Spaces stay spaces (only trailing ones are encoded): the text is still readable.
        part.set_payload(quopri.encodestring(data, quotetabs=False).decode("ascii"))
        part["Content-Transfer-Encoding"] = "quoted-printable"
    else:
        part.set_payload(data)
        email.encoders.encode_base64(part)


def _declare_mime(message: Message) -> None:
    """A message without MIME headers is text/plain US-ASCII by default (RFC 2045 section 5.2); once
    re-encoded its 8-bit text needs a MIME-Version and a charset (UTF-8 if it is, else unknown-8bit)."""
    if message.get("MIME-Version") is None:
        message["MIME-Version"] = "1.0"
    if message.get("Content-Type") is None:
        data = message.get_payload(decode=True)
        try:
            charset = "utf-8" if isinstance(data, bytes) and data.decode("utf-8") is not None else "us-ascii"
        except UnicodeDecodeError:
            charset = "unknown-8bit"  # RFC 1428
        message["Content-Type"] = f"text/plain; charset={charset}"


def _seven_bit_field(name: str, value: str) -> str:
    """A header field's raw value (8-bit bytes as surrogates, as compat32 keeps them) as 7-bit text, folded."""
    raw = value.encode("ascii", "surrogateescape")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # the usual legacy charset; every byte is one of its characters
    field = SMTP.header_factory(name, _UNFOLD.sub("", text))
    folded = field.fold(policy=SMTP)
    if not folded.isascii() or any(isinstance(d, NonASCIILocalPartDefect) for d in field.defects):
        raise ConversionFailed(f"the {name} field cannot be written in 7-bit")
    return folded.split(":", 1)[1].strip()


def _seven_bit_header(part: Message) -> None:
    """Every 8-bit field of ``part``'s header made 7-bit in place (the others, and their order, unchanged)."""
    fields = list(part.raw_items())
    if all(value.isascii() for _name, value in fields):
        return
    for name in {name for name, _value in fields}:
        del part[name]
    for name, value in fields:
        part.set_raw(name, value if value.isascii() else _seven_bit_field(name, value))


def to_seven_bit(body: bytes) -> bytes:
    """``body`` with every 8-bit MIME part re-encoded and every 8-bit header field down-converted, so that
    the result is 7-bit; :class:`ConversionFailed` if that cannot be done."""
    try:
        converted = _convert(body)
    except ConversionFailed:
        raise
    except Exception as exc:  # the email package gave up on this message's structure
        raise ConversionFailed(str(exc)) from exc
    if not converted.isascii():  # nothing 8-bit goes to a server without 8BITMIME, whatever the reason
        raise ConversionFailed("the message could not be made 7-bit")
    return converted


def _convert(body: bytes) -> bytes:
    message = email.message_from_bytes(body, policy=_POLICY)
    if not message.is_multipart():
        _declare_mime(message)
    for part in message.walk():
        _seven_bit_header(part)
        encoding = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if part.get_content_type() in _SEVEN_BIT_ONLY and not _payload_is_ascii(part):
            raise ConversionFailed(f"a {part.get_content_type()} entity has 8-bit content")
        if part.is_multipart() or part.get_content_maintype() == "message":
            # A container is 7-bit once its parts are (RFC 2045 section 6.4).
            if encoding in _EIGHT_BIT:
                part.replace_header("Content-Transfer-Encoding", "7bit")
            continue
        payload = part.get_payload()
        if encoding in _EIGHT_BIT or (isinstance(payload, str) and not payload.isascii()):
            _reencode(part)
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_POLICY).flatten(message)
    return out.getvalue()


def _payload_is_ascii(part: Message) -> bool:
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.isascii()
    return all(_payload_is_ascii(inner) and all(v.isascii() for _n, v in inner.raw_items()) for inner in payload)
