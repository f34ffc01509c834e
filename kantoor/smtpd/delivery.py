"""Final delivery of an accepted message into local INBOXes, through the Store.

One recipient uses ``Store.deliver_message`` (the same call as IMAP APPEND); several
use ``Store.deliver_message_to_mailboxes``, one transaction for all of them, since
SMTP answers DATA once for every recipient: either all get the message or none.
Work on the content that must precede delivery (the MX's SPF/DKIM/DMARC checks) can ride
along as ``prepare``, so a message costs one worker-thread hop, not two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kantoor.quota import QuotaEngine
from kantoor.smtpd.recipients import mailbox_full
from kantoor.storage import BlobTooLarge, QuotaExceeded, StorageError, Store

log = logging.getLogger("kantoor.smtpd")


def _deliver(store: Store, inbox_ids: list[int], trace: bytes, content: bytes) -> None:
    message = trace + content  # copying up to the size limit: done here, off the loop
    if len(inbox_ids) == 1:
        store.deliver_message(inbox_ids[0], message)
    else:
        store.deliver_message_to_mailboxes(inbox_ids, message)


def _full_recipients(store: Store, quota: QuotaEngine, recipients: dict[int, str], size: int) -> list[str]:
    full = []
    for principal_id, address in recipients.items():
        account = store.get_account_by_principal(principal_id)
        if account is not None and mailbox_full(store, quota, account, size):
            full.append(address)
    return full


async def deliver(store: Store, quota: QuotaEngine, inboxes: dict[int, int], recipients: dict[int, str],
                  trace: bytes, content: bytes,
                  prepare: Callable[[bytes], bytes] | None = None,
                  in_thread: Callable[..., Awaitable[Any]] = asyncio.to_thread) -> tuple[str, bytes]:
    """Deliver ``trace`` + ``prepare(content)`` to every INBOX (principal id → INBOX id), ``prepare``
    running in the same worker thread (``in_thread`` runs it); returns the DATA reply and the content as
    delivered."""
    prepared = content

    def work() -> None:
        nonlocal prepared
        if prepare is not None:
            prepared = prepare(content)
        _deliver(store, list(inboxes.values()), trace, prepared)

    try:
        await in_thread(work)
    except QuotaExceeded:
        size = len(trace) + len(prepared)
        full = await in_thread(_full_recipients, store, quota, recipients, size)
        who = ", ".join(f"<{a}>" for a in full) if full else "a recipient"
        return f"452 4.2.2 Mailbox full for {who}; nothing was delivered, try again later", prepared
    except BlobTooLarge:
        return "552 5.3.4 Message size exceeds fixed maximum message size", prepared
    except StorageError:
        # e.g. an account deleted between RCPT and DATA: the transaction rolled back.
        log.exception("local delivery failed")
        return "451 4.3.0 Local delivery failed; nothing was delivered, try again later", prepared
    return f"250 2.0.0 OK: delivered to {len(inboxes)} recipient{'s' if len(inboxes) != 1 else ''}", prepared
