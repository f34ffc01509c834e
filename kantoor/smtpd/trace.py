"""Trace headers the final delivery adds (RFC 5321 section 4.4): Return-Path and Received."""

from __future__ import annotations

import email.utils
import re
import secrets
import time

# Anything a client sends that ends up in our header must not break the header:
# no line breaks, no control characters, bounded length.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f()\\]")


def header_safe(text: str, limit: int = 255) -> str:
    return _UNSAFE.sub("", text)[:limit] or "unknown"


_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")


def _address(text: str) -> str:
    """A path as the client gave it (its quoted local part may hold "<", ">", "(" or a backslash, RFC 5321
    section 4.1.2), only never a line break or another control character."""
    return _CONTROLS.sub("", text)[:320]


_last_date: tuple[int, str] = (-1, "")


def _date_now() -> str:
    """The RFC 5322 date-time of this second (formatted once per second: ~5 % of the event loop's time
    with eight busy MX sessions went to ``localtime`` and ``format_datetime``)."""
    global _last_date
    second = int(time.time())
    if _last_date[0] != second:
        _last_date = (second, email.utils.format_datetime(email.utils.localtime()))
    return _last_date[1]


def new_trace_id() -> str:
    """A mail transaction's id: in the ``Received:`` field's ``id`` clause and in the server's log line for the
    message, so a message in a mailbox leads to its log line (as Postfix's queue id). 60 random bits, hex."""
    return secrets.token_hex(8)[1:].upper()


def protocol_name(esmtp: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """The ``with`` keyword of RFC 3848 / RFC 6531 (ESMTP, ESMTPS, ESMTPSA, UTF8SMTPA, …)."""
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def trace_headers(
    *,
    mail_from: str,
    helo: str,
    peer_ip: str,
    hostname: str,
    protocol: str,
    recipient: str | None,
    return_path: bool = True,
    tls: tuple[str, str] | None = None,
    trace_id: str | None = None,
) -> bytes:
    """``Return-Path`` + ``Received`` lines (CRLF-terminated) to put before the message. ``tls``: the
    connection's (protocol version, cipher suite), recorded as a comment after the ``from`` clause (as
    Postfix and sendmail do) and, for a cipher suite named as in the IANA registry (all of TLS 1.3), as
    RFC 8314 section 4.3's ``tls`` clause. ``trace_id``: the ``id`` clause, the transaction's id as the
    server's log names it (:func:`new_trace_id`). The clauses go in RFC 5321 section 4.4's order: ``with``,
    ``id``, ``for``, then registered ones (``tls``)."""
    sender = "" if mail_from in ("", "<>") else _address(mail_from)
    using = ""
    clause = ""
    if tls is not None:
        version, cipher = header_safe(tls[0], 32), header_safe(tls[1], 64)
        using = f"\r\n\t(using {version} with cipher {cipher})"
        if cipher.startswith("TLS_"):
            clause = f" tls {cipher}"
    received = (f"Received: from {header_safe(helo)} ([{header_safe(peer_ip, 64)}]){using}\r\n"
                f"\tby {header_safe(hostname)} (Kantoor) with {protocol}")
    if trace_id is not None:
        received += f" id {trace_id}"
    if recipient is not None:
        received += f"\r\n\tfor <{_address(recipient)}>"
    received += f"{clause}; {_date_now()}\r\n"
    # Return-Path belongs to the final delivery only (RFC 5321 section 4.4); relaying adds just Received.
    text = f"Return-Path: <{sender}>\r\n{received}" if return_path else received
    return text.encode("utf-8", "surrogateescape")
