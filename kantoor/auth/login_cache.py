"""Short-lived memory of verified credentials, for clients that log in on every request.

HTTP clients (CalDAV, WebDAV) send the password with every request, and an argon2
verification costs a quarter of a second of CPU: without this a sync of a few
hundred requests spends minutes hashing. Only successes are remembered, keyed by
an HMAC of login and password under a per-process random key (never the password
itself), for a short time. The caller re-reads the account on every hit and
compares the password hash, so a changed password or a disabled account stops
working at once, in every process.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VerifiedLogin:
    login: str  # the account's primary login (the client may have used an alias)
    password_hash: str
    # The account as read at verification; handed out again only while the database's
    # row still says the same (see Authenticator._remembered).
    account: Any = None


class LoginCache:
    def __init__(self, ttl_seconds: float = 60.0, max_entries: int = 4096) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[VerifiedLogin, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, login: str, password: str) -> bytes:
        return hmac.digest(self._key, f"{login}\0{password}".encode("utf-8", "surrogatepass"), "sha256")

    def lookup(self, login: str, password: str) -> VerifiedLogin | None:
        digest = self._digest(login, password)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[1] < time.monotonic():
                del self._entries[digest]
                return None
            return entry[0]

    def remember(self, login: str, password: str, verified: VerifiedLogin) -> None:
        digest = self._digest(login, password)
        with self._lock:
            self._entries[digest] = (verified, time.monotonic() + self.ttl)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, login: str, password: str) -> None:
        with self._lock:
            self._entries.pop(self._digest(login, password), None)
