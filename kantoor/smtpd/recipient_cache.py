"""The local recipients this process looked up at RCPT in the last second.

Each RCPT of a local recipient was a Store read in a worker thread: a hop to the thread
and back, two context switches and a wake-up of the event loop, per message. Mail often
comes in bursts for the same few addresses (a list's traffic, a busy sender's connection
reusing its session), and bench/smtp.py's eight connections to one recipient spent ~15 %
less CPU per message once those repeats were answered on the loop from this cache.

Only found recipients are kept (an address guesser's misses would only fill it), for
:data:`TTL_SECONDS`: within that second an account disabled or an alias removed may still
be accepted at RCPT — as by a process that was already past its look-up. The mail usage
(the advisory "mailbox full" check at RCPT) follows this process's own deliveries
(:meth:`RecipientCache.delivered`); the authoritative quota check is the delivery's own.
Used on the event loop's thread only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

from kantoor.storage.accounts import MailRecipient

TTL_SECONDS = 1.0
MAX_ENTRIES = 1024


class RecipientCache:
    """Address (lower case) → the recipient found for it, until it expires."""

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, MailRecipient]] = {}

    def get(self, address: str) -> MailRecipient | None:
        entry = self._entries.get(address.lower())
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[address.lower()]
            return None
        return entry[1]

    def put(self, address: str, recipient: MailRecipient) -> None:
        if len(self._entries) >= self.max_entries:
            self._make_room()
        self._entries[address.lower()] = (time.monotonic() + self.ttl, recipient)

    def delivered(self, addresses: Iterable[str], size: int) -> None:
        """A message of ``size`` bytes was delivered to ``addresses``: their usage grows by it."""
        for address in addresses:
            entry = self._entries.get(address.lower())
            if entry is not None:
                recipient = entry[1]
                self._entries[address.lower()] = (entry[0], dataclasses.replace(
                    recipient, mail_bytes=recipient.mail_bytes + size))

    def _make_room(self) -> None:
        now = time.monotonic()
        self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        if len(self._entries) >= self.max_entries:  # all fresh: the older half goes (insertion order)
            self._entries = dict(list(self._entries.items())[self.max_entries // 2:])


__all__ = ["RecipientCache", "TTL_SECONDS"]
