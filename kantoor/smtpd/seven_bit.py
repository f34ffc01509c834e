"""8-bit to 7-bit conversion for a next hop without 8BITMIME (RFC 6152 section 3).

A message whose body has 8-bit octets may only go to a server that offers
8BITMIME; for any other, each 8-bit MIME part is re-encoded: text as
quoted-printable (still readable), everything else as base64. The email
package does the MIME work. This runs before DKIM signing, so the signature
covers the bytes that are actually sent.
"""

from __future__ import annotations

import email
import email.encoders
import quopri
from email.generator import BytesGenerator
from email.message import Message
from email.policy import compat32
from io import BytesIO

# compat32 without refolding: headers go out as they came in.
_POLICY = compat32.clone(linesep="\r\n", max_line_length=0)
_EIGHT_BIT = ("8bit", "binary")


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


def to_seven_bit(body: bytes) -> bytes:
    """``body`` with every 8-bit MIME part re-encoded so the result is 7-bit (header section unchanged)."""
    try:
        return _convert(body)
    except Exception as exc:  # the email package gave up on this message's structure
        raise ConversionFailed(str(exc)) from exc


def _convert(body: bytes) -> bytes:
    message = email.message_from_bytes(body, policy=_POLICY)
    if not message.is_multipart():
        _declare_mime(message)
    for part in message.walk():
        encoding = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
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
