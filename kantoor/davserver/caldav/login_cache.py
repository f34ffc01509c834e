"""Short-lived memory of verified HTTP Basic credentials.

DAV clients send the password with every request, and one argon2 verification
costs about a quarter of a second of CPU: without this, a sync of a few hundred
requests would spend minutes hashing. Only successes are remembered, under a
salted digest (never the password), for ``ttl`` seconds; every hit re-reads the
account, so a disabled account or a changed password (different hash) stops
working at once, in every process.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass

from kantoor.storage import Store
from kantoor.storage.models import Account


@dataclass(frozen=True)
class _Entry:
    login: str
    password_hash: str
    expires: float


class LoginCache:
    def __init__(self, store: Store, ttl: float = 120.0, max_entries: int = 10_000) -> None:
        self.store = store
        self.ttl = ttl
        self.max_entries = max_entries
        self._salt = os.urandom(32)
        self._entries: dict[bytes, _Entry] = {}
        self._lock = threading.Lock()

    def _key(self, login: str, password: str) -> bytes:
        return hmac.new(self._salt, f"{login}\0{password}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def lookup(self, login: str, password: str) -> Account | None:
        """The account if these exact credentials were verified recently and still hold."""
        key = self._key(login, password)
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry.expires < time.monotonic():
            return None
        account = self.store.get_account(entry.login)
        if account is None or account.state != "active" or account.password_hash != entry.password_hash:
            with self._lock:
                self._entries.pop(key, None)
            return None
        return account

    def remember(self, login: str, password: str, account: Account) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                for stale in [k for k, e in self._entries.items() if e.expires < now] or list(self._entries)[:1]:
                    del self._entries[stale]
            self._entries[self._key(login, password)] = _Entry(account.login, account.password_hash, now + self.ttl)
