"""HTTP Basic authentication for the drive: a wsgidav domain controller on ``Authenticator.check``.

WebDAV clients send the password with every request (Finder and Explorer issue
dozens of PROPFINDs per folder view), and a full check costs an argon2
verification. So a successful check is remembered for a short while, keyed by
an HMAC of login and password under a per-process random key. A remembered
login still re-reads the account on every request: a new password hash or a
disabled state ends it at once, and the plan's webdav gate is checked each time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from wsgidav.dav_error import HTTP_FORBIDDEN, DAVError
from wsgidav.dc.base_dc import BaseDomainController
from wsgidav.http_authenticator import HTTPAuthenticator

from kantoor.davserver.files.context import ACCOUNT_KEY, DriveContext
from kantoor.quota import PlanNotFound
from kantoor.storage.models import Account

REALM = "Kantoor"
log = logging.getLogger("kantoor.davserver.files")


class LoginCache:
    """Recently verified (login, password) pairs → the account login and its password hash."""

    def __init__(self, ttl_seconds: float = 60.0, max_entries: int = 4096) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, tuple[str, str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _digest(self, login: str, password: str) -> bytes:
        return hmac.new(self._key, f"{login.lower()}\0{password}".encode(), hashlib.sha256).digest()

    def lookup(self, login: str, password: str) -> tuple[str, str] | None:
        digest = self._digest(login, password)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[2] < time.monotonic():
                del self._entries[digest]
                return None
            return entry[0], entry[1]

    def remember(self, login: str, password: str, account: Account) -> None:
        digest = self._digest(login, password)
        with self._lock:
            self._entries[digest] = (account.login, account.password_hash, time.monotonic() + self.ttl)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, login: str, password: str) -> None:
        with self._lock:
            self._entries.pop(self._digest(login, password), None)


class DriveDomainController(BaseDomainController):
    """Checks Basic credentials through the one Authenticator and applies the webdav feature gate."""

    def __init__(self, wsgidav_app: Any, config: dict) -> None:
        super().__init__(wsgidav_app, config)
        self.ctx: DriveContext = config["kantoor"]
        self.cache = LoginCache()

    def get_domain_realm(self, path_info: str, environ: dict | None) -> str:
        return REALM

    def require_authentication(self, realm: str, environ: dict | None) -> bool:
        return True

    def supports_http_digest_auth(self) -> bool:
        return False  # Digest needs the clear password (or an MD5 of it); we keep argon2 hashes only

    def basic_auth_user(self, realm: str, user_name: str, password: str, environ: dict) -> bool:
        """True and ``environ[ACCOUNT_KEY]`` set if the login is good; DAVError 403 if the plan forbids it."""
        account = self._remembered(user_name, password)
        if account is None:
            result = self.ctx.authenticator.check(user_name, password, environ.get("REMOTE_ADDR"))
            if not result.ok:
                if result.reason == "disabled":
                    raise DAVError(HTTP_FORBIDDEN, "This account is disabled")
                log.info("drive login failed for %r (%s)", user_name[:320], result.reason)
                if result.reason == "invalid":
                    # The Authenticator leaves the post-failure delay to the frontend.
                    # This is a WSGI worker thread (never the event loop), so it may sleep.
                    time.sleep(self.ctx.authenticator.failure_delay)
                return False
            account = result.account
            assert account is not None
            self.cache.remember(user_name, password, account)
        self._check_plan(account)
        environ[ACCOUNT_KEY] = account
        return True

    def _remembered(self, user_name: str, password: str) -> Account | None:
        hit = self.cache.lookup(user_name, password)
        if hit is None:
            return None
        login, password_hash = hit
        account = self.ctx.store.get_account(login)
        if account is None or account.state != "active" or account.password_hash != password_hash:
            self.cache.forget(user_name, password)
            return None
        return account

    def _check_plan(self, account: Account) -> None:
        try:
            allowed = self.ctx.quota.allows(account, "webdav")
        except PlanNotFound:
            allowed = False
        if not allowed:
            raise DAVError(
                HTTP_FORBIDDEN,
                f"The plan of this account ({account.plan}) does not include WebDAV access to the drive; "
                "a plan with WebDAV is needed to mount it",
            )


def parse_basic_credentials(header: str) -> tuple[str, str] | None:
    """(login, password) from an ``Authorization: Basic …`` value, or None if it is malformed."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    login, sep, password = decoded.partition(":")
    if not sep or not login:
        return None
    return login, password


class DriveAuthenticator(HTTPAuthenticator):
    """wsgidav's authenticator with a Basic parser that answers 401, never 500, to a malformed header."""

    def handle_basic_auth_request(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        credentials = parse_basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if credentials is None:
            return self.send_basic_auth_response(environ, start_response)
        realm = self.domain_controller.get_domain_realm(environ["PATH_INFO"], environ)
        if self.domain_controller.basic_auth_user(realm, credentials[0], credentials[1], environ):
            environ["wsgidav.auth.realm"] = realm
            # The canonical login (not an alias or other spelling) owns locks and hrefs.
            environ["wsgidav.auth.user_name"] = environ[ACCOUNT_KEY].login
            return self.next_app(environ, start_response)
        return self.send_basic_auth_response(environ, start_response)
