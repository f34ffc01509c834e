"""aiosmtpd's SMTP protocol with what Kantoor needs per connection.

aiosmtpd decides "AUTH needs TLS" once per server and checks credentials with a
synchronous callback. Here, per connection: AUTH is allowed on an encrypted
connection (STARTTLS or implicit TLS) and, when the settings allow it, in
plain text from loopback; the password check runs in a worker thread. Every
reply gets an enhanced status code (:mod:`kantoor.smtpd.replies`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Sequence
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.quota import QuotaEngine
from kantoor.smtpd.addresses import path_text
from kantoor.smtpd.dsn import RecipientDSN, is_xtext, parse_notify, raw_parameters, valid_orcpt
from kantoor.smtpd.login import (
    Credentials,
    SubmitIdentity,
    check_login,
    decode_credentials,
)
from kantoor.smtpd.replies import with_enhanced_code

IDENT = "ESMTP Kantoor"  # banner text: no library name or version for scanners
_MALFORMED = "553 5.1.3 Error: malformed address"


class KantoorSession(Session):
    """One connection's state."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.identity: SubmitIdentity | None = None  # set by a successful AUTH
        self.encrypted = False

    # aiosmtpd logs a deprecation warning on every access of login_data; we never
    # read it, so a plain attribute keeps the log quiet.
    @property  # type: ignore[override]
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value

    @property
    def client_ip(self) -> str:
        return str(self.peer[0]) if isinstance(self.peer, tuple) and self.peer else ""


class KantoorEnvelope(Envelope):
    """One mail transaction: accepted recipients with the INBOX each one's mail goes to."""

    def __init__(self) -> None:
        super().__init__()
        self.inboxes: dict[int, int] = {}  # principal id → INBOX collection id
        self.recipients: dict[int, str] = {}  # principal id → the address it was reached by
        self.size_hint = 0  # the MAIL SIZE= parameter (RFC 1870), 0 if not given
        self.remote: list[str] = []  # recipients on other servers (authenticated sessions only)
        self.dsn_envid = ""  # MAIL ENVID= (RFC 3461 section 4.4), case kept
        self.pending_dsn = RecipientDSN()  # NOTIFY/ORCPT of the RCPT command being handled
        self.path = ""  # the address of the MAIL/RCPT command being handled, as sent
        self.dsn: dict[str, RecipientDSN] = {}  # accepted recipient → its DSN request
        self.rate_checked = False


class _PendingCheck:
    """Returned by the synchronous aiosmtpd authenticator hook: check me asynchronously."""

    def __init__(self, credentials: Credentials | None) -> None:
        self.credentials = credentials

    def __repr__(self) -> str:
        return "<credentials withheld>"


def _defer_check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    # aiosmtpd parses PLAIN and LOGIN for us and hands the pair to this hook, which
    # may not block; the real check happens in KantoorSMTP._finish_auth.
    credentials = decode_credentials(data.login, data.password) if isinstance(data, LoginPassword) else None
    return AuthResult(success=False, handled=False, auth_data=_PendingCheck(credentials))


def is_loopback(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class KantoorSMTP(SMTP):
    def __init__(
        self,
        handler: Any,
        *,
        settings: Settings,
        authenticator: Authenticator,
        quota: QuotaEngine,
        starttls_context: ssl.SSLContext | None,
        auth_required: bool,
    ) -> None:
        super().__init__(
            handler,
            data_size_limit=settings.limits.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.server.hostname,
            ident=IDENT,
            tls_context=starttls_context,
            timeout=settings.limits.smtp_timeout_seconds,
            auth_required=auth_required,
            auth_require_tls=True,  # relaxed per connection in connection_made
            authenticator=_defer_check,
            loop=asyncio.get_running_loop(),
        )
        self.settings = settings
        self.kantoor_authenticator = authenticator
        self.quota = quota
        self._greeted = False
        self._in_ehlo = False
        self._verb = ""  # MAIL or RCPT while one is handled: who a malformed address belongs to

    def _create_session(self) -> Session:
        return KantoorSession(self.loop)

    def _create_envelope(self) -> Envelope:
        return KantoorEnvelope()

    # A method, not a property: aiosmtpd's __init__ runs inspect.getmembers(self),
    # which would evaluate a property before any session exists.
    def kantoor_session(self) -> KantoorSession:
        assert isinstance(self.session, KantoorSession)
        return self.session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgrading = self._original_transport is not None  # second call, after STARTTLS
        super().connection_made(transport)
        session = self.kantoor_session()
        implicit_tls = transport.get_extra_info("ssl_object") is not None
        session.encrypted = upgrading or implicit_tls
        # The decision aiosmtpd takes per server, taken per connection instead.
        plaintext_ok = self.settings.auth.allow_plaintext_on_loopback and is_loopback(session.client_ip)
        self._auth_require_tls = not (session.encrypted or plaintext_ok)

    def data_received(self, data: bytes) -> None:
        # aiosmtpd restarts the timer per command only, so a large message on a slow
        # link would be cut off after smtp_timeout_seconds; RFC 5321 section 4.5.3.2.6
        # times the DATA block per arriving data instead.
        if self._timeout_handle is not None:
            self._reset_timeout()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        # RFC 5321 section 4.5.3.2: tell the client why before closing an idle connection.
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"421 4.4.2 " + self.hostname.encode("ascii", "replace")
                                 + b" Timeout, closing connection\r\n")
        super()._timeout_cb()

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if text == _MALFORMED:
            # aiosmtpd's parser gave up on the address: a syntax error (501), RFC 3463's code for whose address.
            text = ("501 5.1.7 Bad sender address syntax" if self._verb == "MAIL"
                    else "501 5.1.3 Bad recipient address syntax")
        # The greeting and the EHLO/HELO lines carry no enhanced code (RFC 2034 section 3).
        if self._greeted and not self._in_ehlo:
            text = with_enhanced_code(text)
        self._greeted = True
        # Replies may quote what the client sent, undecodable bytes included.
        await super().push(text.encode("utf-8", "replace"))

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = bool(hostname)
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    def _getparams(self, params: Sequence[str]) -> dict[str, str | bool] | None:
        # DSN parameters (RFC 3461 section 4): aiosmtpd would refuse them as unknown.
        # They are checked here and taken out; the handler reads them from the options.
        result = super()._getparams(params)
        if result is None:
            return None
        ret = result.pop("RET", None)
        if ret is not None and ret not in ("FULL", "HDRS"):
            return None
        notify = result.pop("NOTIFY", None)
        if notify is not None and (not isinstance(notify, str) or parse_notify(notify) is None):
            return None
        envid = result.pop("ENVID", None)
        if envid is not None and (not isinstance(envid, str) or not is_xtext(envid) or len(envid) > 100):
            return None
        orcpt = result.pop("ORCPT", None)
        if orcpt is not None and (not isinstance(orcpt, str) or not valid_orcpt(orcpt) or len(orcpt) > 500):
            return None
        return result

    async def smtp_MAIL(self, arg: str) -> None:
        # aiosmtpd upper-cases every parameter; ENVID is echoed back in reports as given.
        envelope = self.envelope
        if isinstance(envelope, KantoorEnvelope) and envelope.mail_from is None:
            envelope.dsn_envid = raw_parameters(arg or "").get("ENVID", "")[:100]
            envelope.path = path_text(arg or "")
        self._verb = "MAIL"
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        # The handler hook sees upper-cased parameters only; ORCPT keeps its case (RFC 3461 section 4.2).
        envelope = self.envelope
        if isinstance(envelope, KantoorEnvelope):
            params = raw_parameters(arg or "")
            notify = params.get("NOTIFY")
            envelope.pending_dsn = RecipientDSN(parse_notify(notify) if notify else None, params.get("ORCPT", ""))
            envelope.path = path_text(arg or "")
        self._verb = "RCPT"
        await super().smtp_RCPT(arg)

    async def smtp_HELO(self, hostname: str) -> None:
        self._in_ehlo = bool(hostname)
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_ehlo = False

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._finish_auth(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._finish_auth(await super().auth_LOGIN(_, args))

    async def _finish_auth(self, parsed: AuthResult) -> AuthResult:
        pending = getattr(parsed, "auth_data", None)
        if not isinstance(pending, _PendingCheck):
            return parsed  # aborted or malformed: aiosmtpd has answered already
        session = self.kantoor_session()
        outcome = await check_login(pending.credentials, session.client_ip, self.settings,
                                    self.kantoor_authenticator, self.quota)
        if outcome.identity is None:
            return AuthResult(success=False, handled=False, message=outcome.reply)
        session.identity = outcome.identity
        return AuthResult(success=True, handled=False, message=outcome.reply, auth_data=outcome.identity)
