"""HTTP Basic authentication for the drive: a wsgidav domain controller on ``Authenticator.check``.

WebDAV clients send the password with every request (Finder and Explorer issue
dozens of PROPFINDs per folder view, rclone and davfs2 hundreds of small PUTs);
``Authenticator.check`` remembers recent successes so that no argon2 runs each
time, but still reads the throttle counters and the account row (two queries, a
third of a small GET's CPU). :class:`RecentLogins` lets the same ``Authorization``
header through without them for :data:`REVERIFY_SECONDS` after a full check, so a
changed password or a disabled account stops working on the drive within that
time, in every process (the full check reads the database).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from wsgidav.dav_error import HTTP_FORBIDDEN, DAVError
from wsgidav.dc.base_dc import BaseDomainController
from wsgidav.http_authenticator import HTTPAuthenticator

from kantoor.davserver.basic_auth import parse_basic_credentials
from kantoor.davserver.files.context import ACCOUNT_KEY, DriveContext
from kantoor.quota import PlanNotFound
from kantoor.storage.models import Account

REALM = "Kantoor"
log = logging.getLogger("kantoor.davserver.files")
# How long a fully checked Authorization header is let through again without the
# throttle and account reads (see the module docstring).
REVERIFY_SECONDS = 1.0


class RecentLogins:
    """Authorization headers checked in the last ``ttl`` seconds → the account they authenticated.

    Keyed by an HMAC of the whole header under a per-process random key: neither the
    password nor anything it could be guessed from offline is kept. Bounded in size.
    """

    def __init__(self, ttl: float = REVERIFY_SECONDS, max_entries: int = 1024) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: dict[bytes, tuple[Account, float]] = {}
        self._lock = threading.Lock()

    def _digest(self, header: str) -> bytes:
        # BLAKE2b in its keyed (MAC) mode, not hmac.digest: OpenSSL's one-shot HMAC lets go of the
        # GIL on every call, so the event loop, which looks every request up here, waited for a
        # worker thread to hand the GIL back (half a millisecond a time with one busy thread).
        # hashlib keeps the GIL for inputs this short.
        return hashlib.blake2b(header.encode("utf-8", "surrogatepass"), key=self._key, digest_size=32).digest()

    def lookup(self, header: str) -> Account | None:
        digest = self._digest(header)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[1] <= time.monotonic():
                del self._entries[digest]
                return None
            return entry[0]

    def remember(self, header: str, account: Account) -> None:
        digest = self._digest(header)
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                # Expired ones first; if all are live, start afresh (at worst one more full check each).
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[digest] = (account, now + self.ttl)


class DriveDomainController(BaseDomainController):
    """Checks Basic credentials through the one Authenticator and applies the webdav feature gate."""

    def __init__(self, wsgidav_app: Any, config: dict) -> None:
        super().__init__(wsgidav_app, config)
        self.ctx: DriveContext = config["kantoor"]
        if self.ctx.recent_logins is None:
            self.ctx.recent_logins = RecentLogins()
        self.recent = self.ctx.recent_logins

    def get_domain_realm(self, path_info: str, environ: dict | None) -> str:
        return REALM

    def require_authentication(self, realm: str, environ: dict | None) -> bool:
        return True

    def supports_http_digest_auth(self) -> bool:
        return False  # Digest needs the clear password (or an MD5 of it); we keep argon2 hashes only

    def basic_auth_user(self, realm: str, user_name: str, password: str, environ: dict) -> bool:
        """True and ``environ[ACCOUNT_KEY]`` set if the login is good; DAVError 403 if the plan forbids it."""
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
        self._check_plan(account)
        environ[ACCOUNT_KEY] = account
        return True

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


class DriveAuthenticator(HTTPAuthenticator):
    """wsgidav's authenticator with a Basic parser that answers 401, never 500, to a malformed header."""

    def handle_basic_auth_request(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not password_may_travel(environ, self.domain_controller.ctx.settings.auth.allow_plaintext_on_loopback):
            # RFC 7617 §4 / RFC 8314: a password in clear text only on loopback; refused
            # before it is even checked, with a reason the user can act on.
            raise DAVError(HTTP_FORBIDDEN, "Passwords are not accepted over plain HTTP; use https:// for the drive")
        header = environ.get("HTTP_AUTHORIZATION", "")
        controller = self.domain_controller
        realm = controller.get_domain_realm(environ["PATH_INFO"], environ)
        account = controller.recent.lookup(header)
        if account is not None:
            # Checked in full (password, throttle, state, plan) less than REVERIFY_SECONDS ago.
            environ[ACCOUNT_KEY] = account
        else:
            credentials = parse_basic_credentials(header)
            if credentials is None or not controller.basic_auth_user(realm, credentials[0], credentials[1], environ):
                return self.send_basic_auth_response(environ, start_response)
            controller.recent.remember(header, environ[ACCOUNT_KEY])
        environ["wsgidav.auth.realm"] = realm
        # The canonical login (not an alias or other spelling) owns locks and hrefs.
        environ["wsgidav.auth.user_name"] = environ[ACCOUNT_KEY].login
        return self.next_app(environ, start_response)


def password_may_travel(environ: dict, plaintext_on_loopback: bool) -> bool:
    """True over TLS, or over plain HTTP from a loopback address when the settings allow it."""
    if environ.get("wsgi.url_scheme") == "https":
        return True
    if not plaintext_on_loopback:
        return False
    return _is_loopback(environ.get("REMOTE_ADDR") or "")


@functools.lru_cache(maxsize=256)
def _is_loopback(remote_addr: str) -> bool:
    # Parsed once per client address: ipaddress took ~12 µs of every request.
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)
