"""SMTP AUTH (RFC 4954): the credential check and the plan's feature gate, off the event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.quota import QuotaEngine


@dataclass(frozen=True)
class Credentials:
    """A login and password a client sent; the password never shows in a repr or a log."""

    login: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class SubmitIdentity:
    """Who an authenticated SMTP session acts as (no secrets, safe to log)."""

    login: str
    account_id: int
    principal_id: int


@dataclass(frozen=True)
class LoginOutcome:
    identity: SubmitIdentity | None
    reply: str  # the SMTP reply to send


SUCCESS = "235 2.7.0 Authentication successful"
INVALID = "535 5.7.8 Authentication credentials invalid"
THROTTLED = "454 4.7.0 Too many failed logins; try again later"
NO_SMTP = ("535 5.7.1 Your plan does not include sending mail with a mail program (SMTP); "
           "upgrade your plan to use it")


def decode_credentials(login: bytes, password: bytes) -> Credentials | None:
    """The UTF-8 text of what the client sent (RFC 4616), or None if it is not UTF-8."""
    try:
        return Credentials(login.decode("utf-8"), password.decode("utf-8"))
    except UnicodeDecodeError:
        return None


async def check_login(
    credentials: Credentials | None,
    client_ip: str | None,
    settings: Settings,
    authenticator: Authenticator,
    quota: QuotaEngine,
) -> LoginOutcome:
    """Verify credentials (argon2 and SQL run in a worker thread); a failure costs a delay."""
    if credentials is None:
        result = None
    else:
        result = await asyncio.to_thread(authenticator.check, credentials.login, credentials.password, client_ip)
    if result is None or not result.ok:
        # The delay runs on the loop asynchronously: it slows guessing without blocking anyone else.
        await asyncio.sleep(settings.auth.failure_delay_seconds)
        return LoginOutcome(None, THROTTLED if result is not None and result.reason == "throttled" else INVALID)
    account = result.account
    assert account is not None
    try:
        allowed = quota.allows(account, "smtp")
    except LookupError:  # a plan the settings no longer define grants nothing
        allowed = False
    if not allowed:
        return LoginOutcome(None, NO_SMTP)
    return LoginOutcome(SubmitIdentity(account.login, account.id, account.principal_id), SUCCESS)
