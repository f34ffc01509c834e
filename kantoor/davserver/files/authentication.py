"""HTTP Basic authentication for the drive: a wsgidav domain controller on ``Authenticator.check``.

WebDAV clients send the password with every request (Finder and Explorer issue
dozens of PROPFINDs per folder view); ``Authenticator.check`` remembers recent
successes so that stays cheap, and the plan's webdav gate is checked each time.
"""

from __future__ import annotations

import ipaddress
import logging
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


class DriveDomainController(BaseDomainController):
    """Checks Basic credentials through the one Authenticator and applies the webdav feature gate."""

    def __init__(self, wsgidav_app: Any, config: dict) -> None:
        super().__init__(wsgidav_app, config)
        self.ctx: DriveContext = config["kantoor"]

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
        if not _password_may_travel(environ, self.domain_controller.ctx.settings.auth.allow_plaintext_on_loopback):
            # RFC 7617 §4 / RFC 8314: a password in clear text only on loopback; refused
            # before it is even checked, with a reason the user can act on.
            raise DAVError(HTTP_FORBIDDEN, "Passwords are not accepted over plain HTTP; use https:// for the drive")
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


def _password_may_travel(environ: dict, plaintext_on_loopback: bool) -> bool:
    """True over TLS, or over plain HTTP from a loopback address when the settings allow it."""
    if environ.get("wsgi.url_scheme") == "https":
        return True
    if not plaintext_on_loopback:
        return False
    try:
        address = ipaddress.ip_address(environ.get("REMOTE_ADDR") or "")
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)
