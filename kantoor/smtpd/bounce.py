"""Delivery status notifications (RFC 3464): failed, delayed, delivered and relayed recipients.

The report is a ``multipart/report; report-type=delivery-status`` (RFC 6522):
a readable explanation, the machine-readable ``message/delivery-status`` with
one block per recipient, and the original message — whole only in a report of a
failure when the sender did not ask RET=HDRS and it is not large, else only its
header (RFC 3461 section 4.3). The From, Date and Message-ID come from
:func:`kantoor.storage.outbound.server_mail`, which every server mail goes through.

A report on a UTF-8 address (RFC 6531) is a ``message/global-delivery-status`` with the
address type ``utf-8``, and an original with a UTF-8 header comes back as
``message/global`` or ``message/global-headers`` (RFC 6533 section 6): the plain types
promise ASCII.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import secrets
from dataclasses import dataclass

from kantoor.config import Settings
from kantoor.smtpd.dsn import xtext_decode
from kantoor.smtpd.header_completion import header_end
from kantoor.smtpd.trace import header_safe
from kantoor.storage.outbound import NewOutbound, server_mail

FULL_RETURN_LIMIT = 256 * 1024  # larger originals come back as headers only
_ENHANCED = re.compile(r"^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b")

FAILED, DELAYED, DELIVERED, RELAYED = "failed", "delayed", "delivered", "relayed"
_SUBJECT = {
    FAILED: "Undelivered Mail Returned to Sender",
    DELAYED: "Delayed Mail (still being retried)",
    DELIVERED: "Successful Mail Delivery Report",
    RELAYED: "Successful Mail Delivery Report",
}
_EXPLAINED = {
    FAILED: "could not be delivered to",
    DELAYED: "has not yet been delivered to (delivery will be retried)",
    DELIVERED: "was delivered to the mailbox of",
    RELAYED: "was passed on to a server that does not send delivery reports, for",
}


@dataclass(frozen=True)
class RecipientReport:
    """One recipient's block of the report (RFC 3464 section 2.3)."""

    recipient: str
    action: str  # failed | delayed | delivered | relayed
    status: str  # RFC 3463, e.g. 5.1.1
    diagnostic: str = ""  # the last SMTP reply
    remote_mta: str = ""
    original_recipient: str = ""  # "rfc822; a@example.org" from ORCPT
    will_retry_until: dt.datetime | None = None  # delayed only
    # Whose reply ``diagnostic`` is (RFC 3464 section 2.3.6): "smtp", the remote server's; "X-Kantoor", one this
    # server made (a host it could not reach, a mailbox of its own that is full), as Postfix writes X-Postfix.
    diagnostic_type: str = "smtp"


def status_of(reply: str, expired: bool = False) -> str:
    """The RFC 3463 status for a recipient, from its last reply."""
    if expired:
        return "4.4.7"  # delivery time expired
    if match := _ENHANCED.match(reply):
        return match.group(1)
    return {"2": "2.0.0", "5": "5.0.0"}.get(reply[:1], "4.0.0")




def _recipient_block(report: RecipientReport, now: str) -> str:
    block = []
    if report.original_recipient:
        block.append(f"Original-Recipient: {header_safe(report.original_recipient, 500)}")
    address_type = "rfc822" if report.recipient.isascii() else "utf-8"  # RFC 6533 section 3
    block += [f"Final-Recipient: {address_type}; {header_safe(report.recipient, 320)}", f"Action: {report.action}",
              f"Status: {report.status}"]
    if report.remote_mta:
        block.append(f"Remote-MTA: dns; {header_safe(report.remote_mta)}")
    if report.diagnostic:
        block.append(f"Diagnostic-Code: {report.diagnostic_type}; {header_safe(report.diagnostic, 500)}")
    block.append(f"Last-Attempt-Date: {now}")
    if report.will_retry_until is not None:
        block.append(f"Will-Retry-Until: {email.utils.format_datetime(report.will_retry_until)}")
    return "\r\n".join(block)


def delivery_status_notification(
    *,
    hostname: str,
    sender: str,
    reports: list[RecipientReport],
    original: bytes,
    arrival: dt.datetime,
    envid: str = "",
    ret: str = "",
) -> bytes:
    """The report for ``sender`` (header without From/Date/Message-ID, see ``server_mail``)."""
    if not reports:
        raise ValueError("a delivery status notification needs at least one recipient")
    boundary = f"kantoor-dsn-{secrets.token_hex(12)}"
    host = header_safe(hostname)
    now = email.utils.format_datetime(email.utils.localtime())
    actions = {r.action for r in reports}
    main = next(a for a in (FAILED, DELAYED, DELIVERED, RELAYED) if a in actions)
    lines = [f"This is the mail system at {host}.", ""]
    for action in (FAILED, DELAYED, DELIVERED, RELAYED):
        listed = [r for r in reports if r.action == action]
        if not listed:
            continue
        lines += [f"Your message {_EXPLAINED[action]}:", ""]
        lines += [f"  <{header_safe(r.recipient, 320)}>" + (f": {header_safe(r.diagnostic, 500)}" if r.diagnostic
                                                               else "") for r in listed]
        lines.append("")
    human = "\r\n".join(lines) + "\r\n"

    status = [f"Reporting-MTA: dns; {host}"]
    if envid:
        status.append(f"Original-Envelope-Id: {header_safe(xtext_decode(envid), 100)}")
    status.append(f"Arrival-Date: {email.utils.format_datetime(arrival)}")
    blocks = ["\r\n".join(status)] + [_recipient_block(r, now) for r in reports]
    delivery_status = "\r\n\r\n".join(blocks) + "\r\n"

    headers_only = FAILED not in actions or ret.upper() == "HDRS" or len(original) > FULL_RETURN_LIMIT
    returned = original[:header_end(original)] if headers_only else original
    utf8_header = not original[:header_end(original)].isascii()
    returned_type = {(True, False): "text/rfc822-headers", (True, True): "message/global-headers",
                     (False, False): "message/rfc822", (False, True): "message/global"}[headers_only, utf8_header]
    utf8_status = not delivery_status.isascii()
    status_type = "message/global-delivery-status" if utf8_status else "message/delivery-status"
    head = (
        f"To: <{header_safe(sender, 320)}>\r\n"
        f"Subject: {_SUBJECT[main]}\r\n"
        "Auto-Submitted: auto-replied\r\n"  # RFC 3834: no automatic answer to this
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated delivery status notification.\r\n"
    )
    # The CRLF before a boundary line is the boundary's (RFC 2046 section 5.1.1): each part gets one more, or
    # its last line — the last field of the status and of a returned header — would have no line end of its own.
    parts = [
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{human}\r\n",
        f"--{boundary}\r\nContent-Type: {status_type}\r\n\r\n{delivery_status}\r\n",
    ]
    text = (head + "".join(parts)).encode("utf-8", "replace")
    tail = f"--{boundary}\r\nContent-Type: {returned_type}\r\n\r\n".encode()
    if not returned.endswith(b"\r\n"):
        returned += b"\r\n"
    return text + tail + returned + f"\r\n--{boundary}--\r\n".encode()


def report_mail(settings: Settings, *, sender: str, reports: list[RecipientReport], original: bytes,
                arrival: dt.datetime, envid: str = "", ret: str = "") -> NewOutbound | None:
    """The queue entry carrying a report to ``sender``; None when there is nothing to report or no one to
    report to (a message with the null sender gets no report: RFC 3461 section 6.2, RFC 5321 section 6.1)."""
    if not sender or not reports:
        return None
    body = delivery_status_notification(hostname=settings.server.hostname, sender=sender, reports=reports,
                                        original=original, arrival=arrival, envid=envid, ret=ret)
    return server_mail(settings, [sender], body)
