"""Failed-login throttling per account and per client address, in the database.

The counters live in the shared database so every server process sees the same
ones (ARCHITECTURE invariant 2). After ``max_failures`` failures inside the
window, further attempts for that account or address are refused without even
checking the password, until the window ends. The delay a frontend adds after a
failure is its own (and asynchronous): nothing here sleeps.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, delete, select

from kantoor.config import Settings
from kantoor.storage import Store
from kantoor.storage.models import LoginFailure, utcnow

# Read for every login, i.e. every HTTP request of a DAV client: built once.
_FAILURES = select(LoginFailure).where(LoginFailure.key.in_(bindparam("keys", expanding=True)))


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes even for timezone-aware columns.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class LoginThrottle:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.max_failures = settings.auth.max_failures
        self.window = dt.timedelta(seconds=settings.auth.failure_window_seconds)

    @staticmethod
    def keys(login: str, address: str | None) -> list[str]:
        keys = [f"account:{login.strip().lower()}"]
        if address:
            keys.append(f"address:{address}")
        return keys

    def status(self, login: str, address: str | None) -> tuple[bool, bool]:
        """(blocked, the account has failures on record) — one read, no write."""
        now = utcnow()
        blocked = has_failures = False
        account_key = self.keys(login, None)[0]
        with self.store.read() as s:
            for row in s.scalars(_FAILURES, {"keys": self.keys(login, address)}):
                if row.key == account_key:
                    has_failures = True
                if now - row.window_start < self.window and row.count >= self.max_failures:
                    blocked = True
        return blocked, has_failures

    def record_failure(self, login: str, address: str | None) -> None:
        now = utcnow()
        with self.store.write() as s:
            for key in self.keys(login, address):
                row = s.get(LoginFailure, key)
                if row is None:
                    s.add(LoginFailure(key=key, count=1, window_start=now))
                elif now - row.window_start >= self.window:
                    row.count = 1
                    row.window_start = now
                else:
                    row.count += 1

    def record_success(self, login: str) -> None:
        # Only the account's counter resets: an address that is guessing at many
        # accounts stays throttled even if one guess was right.
        with self.store.write() as s:
            s.execute(delete(LoginFailure).where(LoginFailure.key == self.keys(login, None)[0]))
