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
                  in_thread: Callable[..., Awaitable[Any]] = asyncio.to_thread,
                  defer: Callable[[list[str], bytes], None] | None = None) -> tuple[str, bytes, list[str]]:
    """Deliver ``trace`` + ``prepare(content)`` to every INBOX (principal id → INBOX id), ``prepare``
    running in the same worker thread (``in_thread`` runs it); returns the DATA reply, the content as
    delivered, and the recipients it was deferred for.

    All or nothing, with one exception: when some of several recipients' mailboxes are full, the others get
    the message now and ``defer(addresses, content)`` (if given) queues it for the full ones, whose copy
    then waits in the outbound queue for room, retried as any delivery, bounced to the sender when it expires
    (as Postfix defers one recipient). Without it every recipient waited for the fullest mailbox: the sending
    server retried the whole message, and bounced it for all of them in the end."""
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
        room = [inbox for principal, inbox in inboxes.items() if recipients.get(principal) not in full]
        if defer is not None and full and room:
            return await _deliver_to_the_rest(store, room, full, trace, prepared, defer, in_thread)
        who = ", ".join(f"<{a}>" for a in full) if full else "a recipient"
        return f"452 4.2.2 Mailbox full for {who}; nothing was delivered, try again later", prepared, []
    except BlobTooLarge:
        return "552 5.3.4 Message size exceeds fixed maximum message size", prepared, []
    except StorageError:
        # e.g. an account deleted between RCPT and DATA: the transaction rolled back.
        log.exception("local delivery failed")
        return "451 4.3.0 Local delivery failed; nothing was delivered, try again later", prepared, []
    return _delivered(len(inboxes)), prepared, []


def _delivered(count: int) -> str:
    return f"250 2.0.0 OK: delivered to {count} recipient{'s' if count != 1 else ''}"


async def _deliver_to_the_rest(store: Store, room: list[int], full: list[str], trace: bytes, content: bytes,
                               defer: Callable[[list[str], bytes], None],
                               in_thread: Callable[..., Awaitable[Any]]) -> tuple[str, bytes, list[str]]:
    """The message delivered to the INBOXes in ``room`` and queued for the ``full`` recipients; a failure of
    either answers for the whole message, as before (a copy delivered twice on the sender's retry beats one
    lost)."""
    try:
        await in_thread(_deliver, store, room, trace, content)
    except QuotaExceeded:  # another mailbox filled up meanwhile
        return "452 4.2.2 Mailbox full; nothing was delivered, try again later", content, []
    except StorageError:
        log.exception("local delivery failed")
        return "451 4.3.0 Local delivery failed; nothing was delivered, try again later", content, []
    try:
        await in_thread(defer, full, content)
    except StorageError:
        log.exception("queueing a message for full mailboxes failed")
        return "451 4.3.0 Could not keep the message for a full mailbox; try again later", content, []
    who = ", ".join(f"<{a}>" for a in full)
    return f"{_delivered(len(room))}; kept for {who} until the mailbox has room", content, full
