"""The one credential check every protocol uses (IMAP, SMTP, HTTP Basic).

``check()`` blocks (argon2 and SQL): frontends run it in a worker thread and add
their own asynchronous delay after a failure, so a failed login never stalls
the event loop. Recently verified credentials are remembered briefly (see
:mod:`kantoor.auth.login_cache`), so HTTP clients that authenticate every request
do not pay for argon2 each time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select

from kantoor.auth.login_cache import LoginCache, VerifiedLogin
from kantoor.auth.passwords import verify_password
from kantoor.auth.throttle import LoginThrottle
from kantoor.config import Settings
from kantoor.storage import Store
from kantoor.storage.models import Account, Alias, utcnow

# last_login_at only needs day precision (inactive-account clean-up), so it is
# refreshed at most this often.
LAST_LOGIN_RESOLUTION = dt.timedelta(minutes=10)

# The columns a remembered account is compared on before it is handed out again
# (everything a frontend may act on, and how many aliases it has; not the photo, for
# its size, nor last_login_at, which check() itself refreshes).
_ROW_COLUMNS = ("login", "password_hash", "first_name", "last_name", "organisation", "plan", "state", "role",
                "session_timeout_minutes", "must_change_password")
_ACCOUNT_ROW = select(*(getattr(Account, c) for c in _ROW_COLUMNS),
                      select(func.count()).where(Alias.account_id == Account.id).scalar_subquery()
                      ).where(Account.id == bindparam("id"))


def _account_row(account: Account) -> tuple:
    return (*(getattr(account, c) for c in _ROW_COLUMNS), len(account.aliases))


@dataclass(frozen=True)
class LoginResult:
    account: Account | None
    reason: str = ""  # why it failed: "invalid", "throttled", "disabled"

    @property
    def ok(self) -> bool:
        return self.account is not None


class Authenticator:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.throttle = LoginThrottle(store, settings)
        self.failure_delay = settings.auth.failure_delay_seconds
        self.verified = LoginCache(ttl_seconds=settings.auth.login_cache_seconds)

    def check(self, login: str, password: str, client_address: str | None = None) -> LoginResult:
        """Verify a login (primary address or alias) and password; never logs the password."""
        login = (login or "").strip().lower()
        if not login or len(login) > 320 or len(password) > 1024:
            return LoginResult(None, "invalid")
        blocked, had_failures = self.throttle.status(login, client_address)
        if blocked:
            return LoginResult(None, "throttled")
        account = self._remembered(login, password)
        if account is not None:
            return LoginResult(account)
        account = self.store.get_account(login)
        matched = verify_password(account.password_hash if account else "", password)
        if account is None or not matched:
            self.throttle.record_failure(login, client_address)
            return LoginResult(None, "invalid")
        if account.state != "active":
            return LoginResult(None, "disabled")
        # Writes only when there is something to record: HTTP clients send
        # credentials with every request, and a read-only check keeps that cheap.
        if had_failures:
            self.throttle.record_success(login)
        last = account.last_login_at
        now = utcnow()
        if last is None or now - last > LAST_LOGIN_RESOLUTION:
            account = self.store.update_account(account.login, last_login_at=now)
        self.verified.remember(login, password, VerifiedLogin(account.login, account.password_hash, account))
        return LoginResult(account)

    def _remembered(self, login: str, password: str) -> Account | None:
        """The account, if these credentials were verified recently and its hash and state still hold."""
        hit = self.verified.lookup(login, password)
        if hit is None:
            return None
        account = hit.account
        if account is None or _account_row(account) != self._current_row(account.id):
            # Something about the account changed (or it is gone): read it whole again.
            account = self.store.get_account(hit.login)
            if account is not None:
                self.verified.remember(login, password, VerifiedLogin(hit.login, hit.password_hash, account))
        if account is None or account.state != "active" or account.password_hash != hit.password_hash:
            self.verified.forget(login, password)
            return None
        return account

    def _current_row(self, account_id: int) -> tuple | None:
        # One small read per request instead of the account with its aliases (a third
        # of a cached login's cost): the row decides whether the remembered account holds.
        with self.store.read() as s:
            row = s.execute(_ACCOUNT_ROW, {"id": account_id}).first()
        return tuple(row) if row is not None else None
