"""Submitted mail for other servers: trace header, DKIM signature, into the outbound queue.

Runs in a worker thread (key file, signing and Store calls block).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from kantoor.smtpd.dkim_keys import load_key, sign
from kantoor.smtpd.outbound_settings import DeliverySettings
from kantoor.storage import Store
from kantoor.storage.outbound import NewOutbound

log = logging.getLogger("kantoor.smtpd.outbound")


def dkim_signed(message: bytes, sender: str, data_dir: Path, selector: str) -> bytes:
    """``message`` signed with the key of the sender's domain, or unchanged if that domain has no key."""
    domain = sender.rpartition("@")[2].lower()
    key = load_key(data_dir, domain) if domain else None
    if key is None:
        return message
    try:
        return sign(message, domain, selector, key)
    except Exception:  # a message dkimpy cannot parse still goes out, unsigned
        log.warning("DKIM signing failed for a message from domain %s", domain, exc_info=True)
        return message


def queue_for_remote(store: Store, delivery: DeliverySettings, data_dir: Path, *, sender: str,
                     recipients: list[str], trace: bytes, content: bytes, account_id: int | None,
                     mail_options: list[str], envid: str = "") -> int:
    """Put a submitted message in the outbound queue; returns its queue id."""
    signed = dkim_signed(content, sender, data_dir, delivery.dkim_selector)
    options = {k.upper(): v for k, _, v in (o.partition("=") for o in mail_options)}
    message = NewOutbound(sender, recipients, trace + signed, account_id=account_id,
                          expires_in=dt.timedelta(seconds=delivery.expire_seconds),
                          dsn_envid=envid[:100], dsn_ret=options.get("RET", "")[:8].upper())
    return store.enqueue_outbound(message).id


def over_sending_limit(store: Store, delivery: DeliverySettings, account_id: int) -> bool:
    """Has the account queued its hourly allowance of messages for other servers?"""
    if delivery.max_messages_per_hour <= 0:
        return False
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    return store.count_outbound_since(account_id, since) >= delivery.max_messages_per_hour
