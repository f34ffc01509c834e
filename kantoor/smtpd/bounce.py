"""Delivery status notifications (RFC 3464) for mail that could not be delivered.

The report is a ``multipart/report; report-type=delivery-status`` (RFC 6522):
a readable explanation, the machine-readable ``message/delivery-status`` with
one block per failed recipient, and the original message (or only its header
when the sender asked RET=HDRS, RFC 3461, or when it is large).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import secrets

from kantoor.smtpd.trace import header_safe

FULL_RETURN_LIMIT = 256 * 1024  # larger originals come back as headers only
_ENHANCED = re.compile(r"^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b")


def status_of(reply: str, expired: bool = False) -> str:
    """The RFC 3463 status for a failed recipient, from its last reply."""
    if expired:
        return "4.4.7"  # delivery time expired
    if match := _ENHANCED.match(reply):
        return match.group(1)
    return "5.0.0" if reply.startswith("5") else "4.0.0"


def _header_part(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    return original if end < 0 else original[:end + 2]


def delivery_status_notification(
    *,
    hostname: str,
    sender: str,
    failures: dict[str, str],
    original: bytes,
    arrival: dt.datetime,
    expired: bool = False,
    remote_mta: str = "",
    envid: str = "",
    ret: str = "",
) -> bytes:
    """The bounce for ``sender`` about ``failures`` (recipient → last reply)."""
    boundary = f"kantoor-dsn-{secrets.token_hex(12)}"
    host = header_safe(hostname)
    now = email.utils.format_datetime(email.utils.localtime())
    reason = "was not delivered in time" if expired else "could not be delivered"
    lines = [
        f"This is the mail system at {host}.",
        "",
        f"Your message {reason} to the following recipient(s):",
        "",
    ]
    for recipient, reply in failures.items():
        lines.append(f"  <{header_safe(recipient, 320)}>: {header_safe(reply, 500)}")
    lines += ["", "The original message is attached."]
    human = "\r\n".join(lines) + "\r\n"

    status = [f"Reporting-MTA: dns; {host}"]
    if envid:
        status.append(f"Original-Envelope-Id: {header_safe(envid, 100)}")
    status.append(f"Arrival-Date: {email.utils.format_datetime(arrival)}")
    blocks = ["\r\n".join(status)]
    for recipient, reply in failures.items():
        block = [f"Final-Recipient: rfc822; {header_safe(recipient, 320)}", "Action: failed",
                 f"Status: {status_of(reply, expired)}"]
        if remote_mta:
            block.append(f"Remote-MTA: dns; {header_safe(remote_mta)}")
        block += [f"Diagnostic-Code: smtp; {header_safe(reply, 500)}", f"Last-Attempt-Date: {now}"]
        blocks.append("\r\n".join(block))
    delivery_status = "\r\n\r\n".join(blocks) + "\r\n"

    headers_only = ret.upper() == "HDRS" or len(original) > FULL_RETURN_LIMIT
    returned = _header_part(original) if headers_only else original
    returned_type = "text/rfc822-headers" if headers_only else "message/rfc822"
    head = (
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n"
        f"To: <{header_safe(sender, 320)}>\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {now}\r\n"
        f"Message-ID: <{secrets.token_hex(16)}@{host}>\r\n"
        "Auto-Submitted: auto-replied\r\n"  # RFC 3834: no automatic answer to this
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated delivery status notification.\r\n"
    )
    parts = [
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{human}",
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n{delivery_status}",
    ]
    text = (head + "".join(parts)).encode("utf-8", "replace")
    tail = f"--{boundary}\r\nContent-Type: {returned_type}\r\n\r\n".encode()
    if not returned.endswith(b"\r\n"):
        returned += b"\r\n"
    return text + tail + returned + f"--{boundary}--\r\n".encode()
