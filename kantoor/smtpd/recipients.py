"""Who may receive mail here: the RCPT TO decision for MX and submission.

Local recipients are accepted (unless their mailbox is full); unknown addresses in
our own domains get 550 5.1.1; everything else is relaying, which we never do for
strangers (550 5.7.1). Authenticated users' mail for other domains goes to the
outbound queue (``remote``).

Runs in a worker thread (Store calls block).
"""

from __future__ import annotations

from dataclasses import dataclass

from kantoor.quota import QuotaEngine
from kantoor.storage import Store
from kantoor.storage.accounts import MailRecipient
from kantoor.storage.models import Account


@dataclass(frozen=True)
class RecipientDecision:
    reply: str
    principal_id: int | None = None  # set when accepted
    inbox_id: int | None = None
    remote: bool = False  # accepted for the outbound queue
    found: MailRecipient | None = None  # the local recipient the address names (accepted or not)


def mailbox_full(store: Store, quota: QuotaEngine, account: Account, size: int) -> bool:
    """Would ``size`` more bytes take this account's mail past its plan? (Advisory: the
    authoritative check is the quota reservation inside the delivery transaction.)"""
    try:
        used, capacity = quota.report(store, account)["mail"]
    except LookupError:  # account on a plan the settings no longer define: let delivery decide
        return False
    return used + max(size, 1) > capacity


def _over_capacity(quota: QuotaEngine, plan: str, used: int, size: int) -> bool:
    """:func:`mailbox_full` from figures already read."""
    try:
        capacity = quota.plan(plan).capacity("mail")
    except LookupError:  # a plan the settings no longer define: let delivery decide
        return False
    return used + max(size, 1) > capacity


def local_decision(quota: QuotaEngine, recipient: MailRecipient, address: str, size_hint: int) -> RecipientDecision:
    """The RCPT decision for ``address``, which names the local ``recipient`` (no Store call: it may run on the
    event loop, from :mod:`kantoor.smtpd.recipient_cache`)."""
    if recipient.inbox_id is None:
        return RecipientDecision(f"550 5.1.1 <{address}>: mailbox unavailable", found=recipient)
    if _over_capacity(quota, recipient.plan, recipient.mail_bytes, size_hint):
        return RecipientDecision(f"452 4.2.2 <{address}>: mailbox full, try again later", found=recipient)
    return RecipientDecision(f"250 2.1.5 <{address}>: recipient OK", recipient.principal_id, recipient.inbox_id,
                             found=recipient)


def decide_recipient(store: Store, quota: QuotaEngine, address: str, authenticated: bool,
                     size_hint: int, mail_domain: str) -> RecipientDecision:
    # RFC 5321 section 4.5.1: a bare "postmaster" must work; it means our main domain's
    # (an alias the administrator gives to whoever reads it).
    lookup = f"postmaster@{mail_domain}" if address.lower() == "postmaster" else address
    # One read: the account, its INBOX and its mail usage.
    recipient = store.mail_recipient(lookup)
    if recipient is not None:
        return local_decision(quota, recipient, address, size_hint)
    _, at, domain = address.rpartition("@")
    if not at or store.is_local_domain(domain):
        return RecipientDecision(f"550 5.1.1 <{address}>: no such mailbox here")
    if authenticated:
        return RecipientDecision(f"250 2.1.5 <{address}>: recipient OK, queued for delivery", remote=True)
    return RecipientDecision(f"550 5.7.1 <{address}>: relay access denied")
