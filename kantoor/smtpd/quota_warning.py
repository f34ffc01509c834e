""""Your mailbox is almost full": one mail when an account's mail usage crosses the warning level.

A periodic task next to the delivery worker (usage grows through SMTP and IMAP
APPEND alike, so it is checked where it is stored, not in one protocol). Each
account gets one warning per crossing: the notice row (``ServerNotice``) is
written with the queued mail in one transaction, and removed once usage is back
below the level, so the next crossing warns again. Safe with several server
processes: the row's primary key lets only one of them send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from email.message import EmailMessage

from kantoor.config import Settings
from kantoor.storage import Store
from kantoor.storage.outbound import server_mail

log = logging.getLogger("kantoor.smtpd.quota")

KIND = "mail-quota"


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def warning_message(login: str, used: int, capacity: int, hostname: str) -> EmailMessage:
    message = EmailMessage()
    message["To"] = login
    message["Subject"] = "Your mailbox is almost full"
    percent = used * 100 // capacity if capacity else 100
    message.set_content(
        f"Your mail on {hostname} uses {_megabytes(used)} of {_megabytes(capacity)} ({percent}%).\n\n"
        "When it is full, new mail is refused and senders are told to try again later.\n"
        "Delete mail you no longer need (and empty the Trash), or choose a larger plan.\n")
    return message


def check_mail_usage(settings: Settings, store: Store) -> int:
    """Send the warnings now due and forget those whose cause is gone; returns how many were queued."""
    percent = settings.delivery.quota_warning_percent
    rows = store.mail_usage_for_notice(KIND, percent)
    below = [account for account, _, used, capacity, outstanding in rows
             if outstanding and used * 100 < capacity * percent]
    store.clear_notices(KIND, below)
    sent = 0
    for account, login, used, capacity, outstanding in rows:
        if outstanding or capacity <= 0 or used * 100 < capacity * percent:
            continue
        mail = server_mail(settings, [login], warning_message(login, used, capacity, settings.server.hostname),
                           display_name="Mail Administrator")
        if store.send_notice_once(account, KIND, mail):
            log.info("mailbox of %s at %d%% of its capacity: warning queued", login, used * 100 // capacity)
            sent += 1
    return sent


class QuotaWarner:
    """Runs :func:`check_mail_usage` every ``quota_check_seconds`` on the server's loop (in a thread)."""

    def __init__(self, settings: Settings, store: Store, queued: Callable[[], None]) -> None:
        self.settings = settings
        self.store = store
        self.queued = queued  # wakes the delivery worker
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="smtp-quota-warning")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        interval = max(self.settings.delivery.quota_check_seconds, 0.1)
        while True:
            try:
                if await asyncio.to_thread(check_mail_usage, self.settings, self.store):
                    self.queued()
            except Exception:  # a database hiccup must not end the task: try again next round
                log.exception("checking mail usage for warnings failed")
            await asyncio.sleep(interval)
