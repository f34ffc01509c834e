"""Submitted mail for other servers into the outbound queue; DKIM signing when it leaves.

Signing happens at delivery, not when the message is queued: the bytes that go
out depend on the next hop (7-bit for one without 8BITMIME, RFC 6152), and the
signature must cover exactly those. Runs in worker threads (key files, signing
and Store calls block).
"""

from __future__ import annotations

import datetime as dt
import logging
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path

from kantoor.smtpd.dkim_keys import load_key, sign
from kantoor.smtpd.dsn import RecipientDSN
from kantoor.smtpd.header_completion import header_end
from kantoor.smtpd.outbound_settings import DeliverySettings
from kantoor.storage import Store
from kantoor.storage.outbound import NewOutbound, SentCount, hourly_limit_reached

log = logging.getLogger("kantoor.smtpd.outbound")

_PARSER = HeaderParser(policy=compat32)


def from_domain(message: bytes) -> str:
    """The domain of the first address in ``message``'s From: field, lower case ("" if none is readable)."""
    header = message[:header_end(message)].decode("utf-8", "surrogateescape")
    value = _PARSER.parsestr(header).get("From")  # folded lines unfolded
    for _name, address in getaddresses([str(value)] if value is not None else []):
        if "@" in address:
            return address.rpartition("@")[2].strip().lower()
    return ""


def signing_domains(sender: str, message: bytes) -> list[str]:
    """Whose key may sign, in order: the From: domain — DMARC passes on DKIM only when the signing domain
    aligns with it (RFC 7489 section 3.1.1), and an account may send From an alias in another of the
    server's domains — then the envelope sender's (null for the server's own mail)."""
    domains = [from_domain(message), sender.rpartition("@")[2].lower() if sender else ""]
    return [d for i, d in enumerate(domains) if d and d not in domains[:i]]


def dkim_signed(message: bytes, sender: str, data_dir: Path, selector: str) -> bytes:
    """``message`` signed with the key of its first :func:`signing_domains` domain that has one, or unchanged
    if none has."""
    for domain in signing_domains(sender, message):
        key = load_key(data_dir, domain)
        if key is None:
            continue
        try:
            return sign(message, domain, selector, key)
        except Exception:  # a message dkimpy cannot parse still goes out, unsigned
            log.warning("DKIM signing failed for a message from domain %s", domain, exc_info=True)
            return message
    return message


def queue_for_remote(store: Store, delivery: DeliverySettings, *, sender: str, recipients: list[str], trace: bytes,
                     content: bytes, account_id: int | None, mail_options: list[str], envid: str = "",
                     dsn: dict[str, RecipientDSN] | None = None, smtputf8: bool = False) -> int:
    """Put a submitted message in the outbound queue; returns its queue id. SendingLimitReached if the account
    has queued its hourly allowance of messages or recipients already (checked again in the queueing transaction:
    the check at RCPT, :func:`sending_limit_reached`, answers early but cannot see what parallel sessions are
    queueing)."""
    options = {k.upper(): v for k, _, v in (o.partition("=") for o in mail_options)}
    requests = {r: d.to_json() for r, d in (dsn or {}).items() if r in recipients and d.to_json()}
    message = NewOutbound(sender, recipients, trace + content, account_id=account_id,
                          expires_in=dt.timedelta(seconds=delivery.expire_seconds),
                          dsn_envid=envid[:100], dsn_ret=options.get("RET", "")[:8].upper(),
                          dsn_recipients=requests, smtputf8=smtputf8,
                          hourly_limit=delivery.max_messages_per_hour if account_id is not None else 0,
                          hourly_recipient_limit=delivery.max_recipients_per_hour if account_id is not None else 0)
    return store.enqueue_outbound(message).id


def sent_last_hour(store: Store, account_id: int) -> SentCount:
    """What the account queued for other servers in the last hour (messages, recipients)."""
    return store.sent_since(account_id, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))


def sending_limit_reached(delivery: DeliverySettings, sent: SentCount, recipients: int) -> str:
    """Why a message to ``recipients`` remote recipients is over the hourly limits after ``sent`` (the text of a
    temporary refusal: the allowance comes back within the hour), or "" if it is not."""
    reached = hourly_limit_reached(sent, delivery.max_messages_per_hour, delivery.max_recipients_per_hour, recipients)
    return "" if reached is None else f"sending limit of {reached[0]} {reached[1]} per hour on other servers reached"
