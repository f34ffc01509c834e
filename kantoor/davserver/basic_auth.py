"""HTTP Basic credentials (RFC 7617), parsed once for every DAV app in this room."""

from __future__ import annotations

import base64
import binascii


def parse_basic_credentials(header: str) -> tuple[str, str] | None:
    """(login, password) from an ``Authorization: Basic …`` value, or None if it is malformed."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    login, sep, password = decoded.partition(":")
    if not sep or not login:
        return None
    return login, password
