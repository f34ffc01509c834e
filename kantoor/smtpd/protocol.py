"""aiosmtpd's SMTP protocol with what Kantoor needs per connection.

aiosmtpd decides "AUTH needs TLS" once per server and checks credentials with a
synchronous callback. Here, per connection: AUTH is allowed on an encrypted
connection (STARTTLS or implicit TLS) and, when the settings allow it, in
plain text from loopback; the password check runs in a worker thread. Every
reply gets an enhanced status code (:mod:`kantoor.smtpd.replies`).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import ipaddress
import re
import ssl
from collections.abc import Sequence
from typing import Any, AnyStr, cast

import idna
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.quota import QuotaEngine
from kantoor.smtpd.addresses import path_text
from kantoor.smtpd.connection_limits import ConnectionCounter
from kantoor.smtpd.dsn import RecipientDSN, is_xtext, parse_notify, raw_parameters, valid_orcpt
from kantoor.smtpd.login import (
    Credentials,
    SubmitIdentity,
    check_login,
    decode_credentials,
)
from kantoor.smtpd.replies import with_enhanced_code
from kantoor.storage.outbound import SentCount

IDENT = "ESMTP Kantoor"  # banner text: no library name or version for scanners
_END_OF_DATA = b"\r\n.\r\n"  # RFC 5321 section 4.1.1.4, with the CRLF that ends the last line
_DATA_CHUNK = 64 * 1024
_SCAN_ON_LOOP_BYTES = 4 * 1024 * 1024  # a larger message is scanned in a worker thread
# A path that is a plain dot-atom address in angle brackets (almost every MAIL/RCPT): parsed here with one
# regex; anything else (quoted local parts, literals, comments, non-ASCII) goes to aiosmtpd's RFC 5322 parser,
# which gives the same address for these, at ~20x the cost.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*)>(?:[ \t]+(.*)|)\Z", re.DOTALL)
_MALFORMED = "553 5.1.3 Error: malformed address"
# What HELP says (RFC 5321 section 4.1.1.8).
_HELP = {
    "EHLO": "EHLO <hostname>", "HELO": "HELO <hostname>", "STARTTLS": "STARTTLS", "AUTH": "AUTH <mechanism>",
    "MAIL": "MAIL FROM:<address> [SIZE=<bytes>] [BODY=7BIT|8BITMIME] [SMTPUTF8] [RET=FULL|HDRS] [ENVID=<id>]",
    "RCPT": "RCPT TO:<address> [NOTIFY=NEVER|SUCCESS,FAILURE,DELAY] [ORCPT=rfc822;<address>]",
    "DATA": "DATA", "RSET": "RSET", "NOOP": "NOOP [ignored]", "VRFY": "VRFY <address>", "HELP": "HELP [command]",
    "QUIT": "QUIT",
}
# What EHLO/HELO may name (RFC 5321 section 4.1.1.1: a domain or an address literal), leniently: single labels
# and underscores, which broken clients send (Postfix takes them too), and U-labels (RFC 6531 section 3.7.1).
# Nothing else: the name goes into the Received: and Authentication-Results: fields, where a blank, a ";", a
# quote or a control character would make clauses or fields of its own.
_HELO_NAME = re.compile(r"[\w-][\w.-]*\Z|\[(?:IPv6:)?[0-9A-Fa-f:.]+\]\Z")
# Control characters (and DEL) in reply text, shown as "?".
_CONTROLS = {code: "?" for code in (*range(0x20), 0x7F)}
# Replies the client waits for, or that aiosmtpd sends right before it closes the connection (see push).
_NEVER_HELD = frozenset({"220", "221", "334", "354", "421", "502"})


class KantoorSession(Session):
    """One connection's state."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.identity: SubmitIdentity | None = None  # set by a successful AUTH
        self.encrypted = False
        self.tls: tuple[str, str] | None = None  # (protocol version, cipher suite) once encrypted

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
        self.sent_last_hour: SentCount | None = None  # the account's sending so far (read at the first remote RCPT)
        self.bare_line_ending: bool | None = None  # found while reading DATA; None: not looked at yet
        # The transaction's id in its Received: field and log line (set when its DATA is handled).
        self.trace_id = ""


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


def _command_size_limits() -> collections.defaultdict[str, int]:
    """The longest command lines after EHLO (RFC 5321 section 4.5.3.1.4: 512), with what the extensions add
    to MAIL (SIZE 26, RFC 1870; BODY=8BITMIME 14, RFC 6152; SMTPUTF8 10, RFC 6531; RET and ENVID 100,
    RFC 3461) and to RCPT (NOTIFY and ORCPT 500, RFC 3461 section 4)."""
    return collections.defaultdict(lambda: SMTP.command_size_limit,
                                   MAIL=SMTP.command_size_limit + 26 + 14 + 10 + 100,
                                   RCPT=SMTP.command_size_limit + 500)


def _valid_helo(name: str) -> bool:
    """Is ``name`` (as aiosmtpd decoded it: UTF-8, undecodable bytes as surrogates) a name EHLO/HELO may give?
    A name beyond ASCII must have A-labels (IDNA 2008, as the server's own domain names)."""
    if len(name) > 255 or not name.isprintable() or _HELO_NAME.match(name) is None:
        return False
    return name.isascii() or _a_labels(name) is not None


def ascii_helo(name: str) -> str:
    """The EHLO/HELO name as it goes into header fields and DNS queries: a U-label name as its A-labels
    (RFC 5890), so a message without SMTPUTF8 gets no 8-bit trace field."""
    if name.isascii():
        return name
    return _a_labels(name) or name.encode("ascii", "replace").decode("ascii")


def _a_labels(name: str) -> str | None:
    try:
        return idna.encode(name.rstrip("."), uts46=True).decode("ascii") + ("." if name.endswith(".") else "")
    except (idna.IDNAError, UnicodeError):
        return None


def is_loopback(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class KantoorSMTP(SMTP):
    # LOGIN's prompts as every other server sends them (draft-murchison-sasl-login section 2.1); aiosmtpd's own
    # are "User Name" and "Password" with a NUL byte at the end.
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(
        self,
        handler: Any,
        *,
        settings: Settings,
        authenticator: Authenticator,
        quota: QuotaEngine,
        starttls_context: ssl.SSLContext | None,
        auth_required: bool,
        connections: ConnectionCounter | None = None,
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
        self._last_data = 0.0  # loop time of the last data received (or timer start)
        self._timer_duration = float(settings.limits.smtp_timeout_seconds)
        self._held_replies: list[bytes] = []  # replies to pipelined commands not written yet (see push)
        self._connections = connections
        self._counted: str | None = None  # this connection's client key while it is counted
        self._refused = False  # refused at connect (too many from its address): no session at all
        self._errors = 0  # errors of the client since its last accepted message (see _error_pause)
        self._junk = 0  # NOOP/RSET/VRFY/HELP/EHLO/HELO commands in this session
        self._reading_data = False  # inside a DATA block: arriving data restarts the timeout
        self._raw_params: dict[str, str] = {}  # the MAIL/RCPT command's parameters as sent (dsn.raw_parameters)
        # aiosmtpd keeps these in a class attribute that every connection clears and every EHLO grows.
        self.command_size_limits = _command_size_limits()

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
        if not upgrading and self._connections is not None:
            peer = transport.get_extra_info("peername")
            self._counted = self._connections.admit(str(peer[0]) if isinstance(peer, tuple) and peer else "")
            if self._counted is None:
                self._refused = True
                transport = cast(asyncio.WriteTransport, transport)  # uvloop's transports are not its subclasses
                transport.write(b"421 4.7.0 " + self.hostname.encode("ascii", "replace")
                                + b" Too many connections from your address; try again later\r\n")
                transport.close()
                return
        super().connection_made(transport)
        session = self.kantoor_session()
        ssl_object = transport.get_extra_info("ssl_object")
        session.encrypted = upgrading or ssl_object is not None
        if ssl_object is not None and (cipher := ssl_object.cipher()) is not None:
            session.tls = (ssl_object.version() or cipher[1], cipher[0])
        # The decision aiosmtpd takes per server, taken per connection instead.
        plaintext_ok = self.settings.auth.allow_plaintext_on_loopback and is_loopback(session.client_ip)
        self._auth_require_tls = not (session.encrypted or plaintext_ok)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return  # no session was set up
        try:
            super().connection_lost(error)
        finally:
            if self._counted is not None and self._connections is not None:
                self._connections.release(self._counted)
                self._counted = None

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # aiosmtpd restarts the timer per command only, so a large message on a slow
        # link would be cut off after smtp_timeout_seconds; RFC 5321 section 4.5.3.2.6
        # times the DATA block per arriving data instead. Noting the time is enough: the
        # timer, when it fires, waits on for what is left (a new timer per read was 4 % of
        # the event loop's time with eight busy MX sessions). A command line still has to
        # arrive whole within the timeout (section 4.5.3.2.7): one byte now and then must
        # not hold a session open for hours.
        if self._reading_data:
            self._last_data = self.loop.time()
        super().data_received(data)

    def _reset_timeout(self, duration: float | None = None) -> None:
        self._timer_duration = duration or self._timeout_duration
        self._last_data = self.loop.time()
        super()._reset_timeout(duration)

    def _timeout_cb(self) -> None:
        idle = self.loop.time() - self._last_data
        if idle < self._timer_duration:  # data came after the timer was set: the time is not up yet
            self._timeout_handle = self.loop.call_later(self._timer_duration - idle, self._timeout_cb)
            return
        # RFC 5321 section 4.5.3.2: tell the client why before closing an idle connection.
        self._flush_held_replies()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"421 4.4.2 " + self.hostname.encode("ascii", "replace")
                                 + b" Timeout, closing connection\r\n")
        super()._timeout_cb()

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        # Replies quote what the client sent (an unknown command, an address): never its control characters
        # (RFC 5321 section 4.2: reply text is printable).
        text = text.translate(_CONTROLS)
        if text == _MALFORMED:
            # aiosmtpd's parser gave up on the address: a syntax error (501), RFC 3463's code for whose address.
            text = ("501 5.1.7 Bad sender address syntax" if self._verb == "MAIL"
                    else "501 5.1.3 Bad recipient address syntax")
        # The greeting and the EHLO/HELO lines carry no enhanced code (RFC 2034 section 3).
        if self._greeted and not self._in_ehlo:
            text = with_enhanced_code(text)
        # An error of the client: the 421 the server closes with, the 452 for recipients past the maximum per
        # message (to be sent in another transaction, RFC 5321 section 4.5.3.1.10) and the 450 4.7.1 for those
        # past the hourly sending limit are not (counted, they ended the session and lost the recipients
        # accepted before them).
        error = text[0] in "45" and not text.startswith(("421", "452 4.5.3", "450 4.7.1"))
        if error:
            await self._error_pause()
        self._greeted = True
        # Replies may quote what the client sent, undecodable bytes included.
        reply = text.encode("utf-8", "replace") + b"\r\n"
        if error and self._errors >= self.settings.limits.smtp_hard_error_limit:
            # The error that reaches the limit ends the session, however many commands the client pipelined:
            # guessing addresses in batches must not get further than one by one.
            self._held_replies.append(reply)
            await self._close_with("421 4.7.0 Too many errors, closing connection")
            return
        if self._next_command_waiting(text):
            # PIPELINING (RFC 2920 section 3.1): the client sent more commands at once and reads the replies
            # when it has sent them all, so this one may wait for the next one's; a batch of commands gets
            # its replies in one write (one send() each was ~7 % of the MX's CPU for pipelining clients).
            self._held_replies.append(reply)
            return
        if self._held_replies:
            reply = b"".join(self._held_replies) + reply
            self._held_replies.clear()
        self._writer.write(reply)
        await self._writer.drain()

    async def _error_pause(self) -> None:
        """Count an error of the client (RFC 5321 leaves error limits to the server; these are Postfix's):
        past ``limits.smtp_soft_error_limit`` each further error reply waits ``limits.smtp_error_delay_seconds``
        before it is sent, which makes guessing addresses slow; the error that reaches
        ``limits.smtp_hard_error_limit`` is answered and the session ends with 421 4.7.0 (in :meth:`push`)."""
        self._errors += 1
        limits = self.settings.limits
        if limits.smtp_soft_error_limit < self._errors < limits.smtp_hard_error_limit:
            await asyncio.sleep(limits.smtp_error_delay_seconds)

    async def _close_with(self, reply: str) -> None:
        """Send ``reply`` (and any held replies before it) and close the connection; commands the client has
        pipelined after the one answered are not read."""
        buffered = getattr(self._reader, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()
        self._flush_held_replies()
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(reply.encode("ascii") + b"\r\n")
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()
            self.transport.close()

    async def _junk_command(self) -> bool:
        """Count a command that moves no mail (NOOP, RSET, VRFY, HELP, EHLO, HELO); past
        ``limits.smtp_junk_command_limit`` in a session each one counts as an error too, and the one that
        reaches the hard error limit ends the session instead of being answered. True if it has ended."""
        self._junk += 1
        if self._junk <= self.settings.limits.smtp_junk_command_limit:
            return False
        await self._error_pause()
        if self._errors >= self.settings.limits.smtp_hard_error_limit:
            await self._close_with("421 4.7.0 Too many commands that move no mail, closing connection")
            return True
        return False

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str) -> None:
        if not await self._junk_command():
            await super().smtp_NOOP(arg)

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        if not await self._junk_command():
            await super().smtp_RSET(arg)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        if not await self._junk_command():
            await super().smtp_VRFY(arg)

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str) -> None:
        """RFC 5321 section 4.1.1.8: 214 with what the server knows; 504 for a command it does not."""
        if await self._junk_command():
            return
        if not arg:
            await self.push(f"214 2.0.0 Commands: {' '.join(_HELP)} (RFC 5321)")
        elif arg.upper() in _HELP:
            await self.push(f"214 2.0.0 Syntax: {_HELP[arg.upper()]}")
        else:
            await self.push(f"504 5.5.4 HELP: no command {arg.upper()[:20]} here")

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        # RFC 4954 section 4: not during a mail transaction. The sender given at MAIL was checked (or not) for
        # the session as it was then; a login after it would send as whoever MAIL named.
        if self.envelope is not None and self.envelope.mail_from is not None:
            await self.push("503 5.5.1 AUTH is not permitted during a mail transaction")
            return
        await super().smtp_AUTH(arg)

    async def smtp_STARTTLS(self, arg: str) -> None:
        # RFC 3207 section 4.2: once TLS is on, STARTTLS is no longer offered (and aiosmtpd's own would answer
        # 220 and then break the connection).
        if self.kantoor_session().encrypted:
            await self.push("503 5.5.1 TLS is already active")
            return
        await super().smtp_STARTTLS(arg)

    def _next_command_waiting(self, reply: str) -> bool:
        """May ``reply`` wait for the next command's? Only when that command has arrived in full (its reply
        comes without waiting for the client), and never a reply the client waits for before it sends more:
        the greeting and STARTTLS's 220, a 334 or 354 continuation, or the closing 221, 421 and 502."""
        if reply[:3] in _NEVER_HELD:
            return False
        buffered = getattr(self._reader, "_buffer", None)
        return isinstance(buffered, bytearray) and b"\n" in buffered

    def _flush_held_replies(self) -> None:
        if self._held_replies and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._held_replies))
        self._held_replies.clear()

    async def smtp_EHLO(self, hostname: str) -> None:
        if await self._junk_command():
            return
        if hostname and not _valid_helo(hostname):
            await self.push("501 5.5.4 Syntax: EHLO hostname (a domain name or an address literal)")
            return
        self._in_ehlo = bool(hostname)
        try:
            await super().smtp_EHLO(ascii_helo(hostname) if hostname else hostname)
        finally:
            self._in_ehlo = False
            self.command_size_limits = _command_size_limits()  # what aiosmtpd's EHLO added, replaced

    def _getparams(self, params: Sequence[str]) -> dict[str, str | bool] | None:
        # A parameter given twice is a syntax error (RFC 3461 section 4 for DSN's; aiosmtpd kept the last SIZE,
        # the quota check the first).
        keywords = [param.partition("=")[0] for param in params]
        if len(set(keywords)) != len(keywords):
            return None
        # DSN parameters (RFC 3461 section 4): aiosmtpd would refuse them as unknown. Those of this command
        # (RET, ENVID for MAIL; NOTIFY, ORCPT for RCPT) are checked here and taken out — xtext as sent, its hex
        # upper case — and the handler reads them from the options; on the other command they stay, unknown (555).
        result = super()._getparams(params)
        if result is None:
            return None
        raw = self._raw_params
        if self._verb == "MAIL":
            ret = result.pop("RET", None)
            if ret is not None and ret not in ("FULL", "HDRS"):
                return None
            envid = result.pop("ENVID", None)
            if envid is not None and (not isinstance(envid, str) or not is_xtext(raw.get("ENVID", ""))
                                      or len(envid) > 100):
                return None
        elif self._verb == "RCPT":
            notify = result.pop("NOTIFY", None)
            if notify is not None and (not isinstance(notify, str) or parse_notify(notify) is None):
                return None
            orcpt = result.pop("ORCPT", None)
            if orcpt is not None and (not isinstance(orcpt, str) or not valid_orcpt(raw.get("ORCPT", ""))
                                      or len(orcpt) > 500):
                return None
        return result

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _PLAIN_PATH.match(arg) if arg else None
        if match is None:
            return super()._getaddr(arg)
        address = match.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, match.group(2) or ""

    async def smtp_MAIL(self, arg: str) -> None:
        # aiosmtpd upper-cases every parameter; ENVID is echoed back in reports as given.
        envelope = self.envelope
        self._raw_params = raw_parameters(arg or "")
        if isinstance(envelope, KantoorEnvelope) and envelope.mail_from is None:
            envelope.dsn_envid = self._raw_params.get("ENVID", "")[:100]
            envelope.path = path_text(arg or "")
        self._verb = "MAIL"
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        # The handler hook sees upper-cased parameters only; ORCPT keeps its case (RFC 3461 section 4.2).
        envelope = self.envelope
        params = self._raw_params = raw_parameters(arg or "")
        if isinstance(envelope, KantoorEnvelope):
            notify = params.get("NOTIFY")
            envelope.pending_dsn = RecipientDSN(parse_notify(notify) if notify else None, params.get("ORCPT", ""))
            envelope.path = path_text(arg or "")
        self._verb = "RCPT"
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA with the message read in chunks instead of one ``readuntil`` per line (a
        coroutine round per 76-byte line was ~10 % of the MX's CPU per message). Same rules: a line
        over ``line_length_limit`` gives 500, more than ``data_size_limit`` bytes 552 — each only after
        the whole message is read (RFC 5321 section 4.2.5) — and dot-stuffing is undone (section 4.5.2)."""
        reader = self._reader
        if not isinstance(getattr(reader, "_buffer", None), bytearray):  # a StreamReader unlike CPython's
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.mail_from:
            await self.push("503 Error: need MAIL command")
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._reading_data = True
        self._last_data = self.loop.time()
        try:
            outcome = await self._read_data_block(reader)
        except asyncio.CancelledError:
            self._writer.close()  # the connection went away mid-DATA: nothing is delivered
            raise
        finally:
            self._reading_data = False
        if outcome is None:
            return
        if outcome != "":
            await self.push(outcome)
            self._set_post_data_state()
            return
        if "DATA" in self._handle_hooks:
            status = await self._call_handler_hook("DATA")
        else:
            status = MISSING
        self._set_post_data_state()
        reply = "250 OK" if status is MISSING else status
        if reply.startswith("250"):
            self._errors = 0  # a client that delivers mail is not probing (Postfix counts errors the same way)
        await self.push(reply)

    async def _read_data_block(self, reader: asyncio.StreamReader) -> str | None:
        """Read up to the end-of-data line; put the content on the envelope and return "", or return the
        error reply (content discarded), or None if the connection ended first."""
        limit = self.data_size_limit or 0
        chunk = await reader.read(_DATA_CHUNK)
        if not chunk:  # EOF: the client gave up before the message
            self._writer.close()
            return None
        # Usually the whole message (and nothing after it) is in the first read: sliced straight from it,
        # one copy instead of four. The terminator's CRLF may be the DATA line's, so ".\r\n" first.
        end = -2 if chunk.startswith(b".\r\n") else chunk.find(_END_OF_DATA)
        if end != -1:
            content = chunk[:end + 2]
            leftover = chunk[end + len(_END_OF_DATA):]
        else:
            outcome = await self._read_rest(reader, chunk, limit)
            if outcome is None or isinstance(outcome, str):
                return outcome
            content, leftover = outcome
        if leftover:  # pipelined commands after the message (RFC 2920): back to the front of the stream
            reader._buffer[:0] = leftover  # type: ignore[attr-defined]
        # Scanning a large message is work for a thread, not for the loop.
        error, bare = (self._scan_content(content, limit) if len(content) < _SCAN_ON_LOOP_BYTES
                       else await asyncio.to_thread(self._scan_content, content, limit))
        if error:
            return error
        # Dot-stuffing undone (section 4.5.2): one scan, and no copy when no line starts with a dot
        # (bytes.replace then returns the same object). The first line has no CRLF before it.
        first_dotted = content.startswith(b".")
        content = content.replace(b"\r\n.", b"\r\n")
        if first_dotted:
            content = content[1:]
        envelope = self.envelope
        assert envelope is not None
        envelope.content = content  # decode_data=False: bytes, as aiosmtpd gives them
        envelope.original_content = content
        if isinstance(envelope, KantoorEnvelope):
            envelope.bare_line_ending = bare
        return ""

    async def _read_rest(self, reader: asyncio.StreamReader, chunk: bytes,
                         limit: int) -> tuple[bytes, bytes] | str | None:
        """The rest of a message whose first read (``chunk``) had no end-of-data line: (content, what came
        after it), or the error reply once the end is read, or None if the connection ended first."""
        # A CRLF in front makes the terminator one pattern even for an empty message (".\r\n" at once).
        buf = bytearray(b"\r\n")
        buf += chunk
        error = ""
        scan_from = 0
        while True:
            end = buf.find(_END_OF_DATA, scan_from)
            if end >= 0:
                break
            scan_from = max(0, len(buf) - len(_END_OF_DATA) + 1)
            if limit and not error and len(buf) - 2 > limit + len(_END_OF_DATA):
                error = self._data_error(bytes(buf[2:]), limit, over_size=True)
            if error and len(buf) > _DATA_CHUNK:
                # Too large anyway: drop what came, keep enough of the tail to see a terminator split across reads.
                del buf[:-(len(_END_OF_DATA) - 1)]
                scan_from = 0
            chunk = await reader.read(_DATA_CHUNK)
            if not chunk:  # EOF: the client gave up mid-message
                self._writer.close()
                return None
            buf += chunk
        leftover = bytes(buf[end + len(_END_OF_DATA):])
        if error:
            if leftover:
                reader._buffer[:0] = leftover  # type: ignore[attr-defined]
            return error
        with memoryview(buf) as view:
            content = bytes(view[2:end + 2])  # every line with its CRLF, without the terminating "."
        return content, leftover

    def _scan_content(self, content: bytes, limit: int) -> tuple[str, bool]:
        """One pass over a whole message as received: the reply refusing it for a too-long line or too many
        bytes ("" if neither), and whether it has a bare CR or LF (RFC 5321 section 2.3.8; judged by the
        handler). One split serves both: the lines' lengths, and what is left of CR and LF once every CRLF
        is gone (two memchr calls; counting CR, LF and CRLF separately took twice as long)."""
        lines = content.split(b"\r\n")
        over_size = bool(limit) and len(content) > limit
        if over_size or max(map(len, lines)) + 2 > self.line_length_limit:
            return self._data_error(content, limit, over_size, lines), False
        rest = b"".join(lines)
        return "", b"\r" in rest or b"\n" in rest

    def _data_error(self, data: bytes, limit: int, over_size: bool, lines: list[bytes] | None = None) -> str:
        """The reply for a message with a too-long line or too many bytes (whichever aiosmtpd, reading
        line by line, would have met first), or "" when it has neither; ``lines``: ``data`` split at CRLF."""
        long_at = -1
        if lines is None:
            lines = data.split(b"\r\n") if len(data) > self.line_length_limit - 2 else []
        # Lines as aiosmtpd reads them (up to each CRLF); the max() in C, the position only when one is long.
        if lines and max(map(len, lines)) + 2 > self.line_length_limit:
            start = 0
            for line in lines:
                if len(line) + 2 > self.line_length_limit:
                    long_at = start
                    break
                start += len(line) + 2
        if long_at >= 0 and (not over_size or long_at + self.line_length_limit <= limit):
            return "500 Line too long (see RFC5321 4.5.3.1.6)"
        if over_size:
            return "552 Error: Too much mail data"
        return ""

    async def smtp_HELO(self, hostname: str) -> None:
        if await self._junk_command():
            return
        if hostname and not _valid_helo(hostname):
            await self.push("501 5.5.4 Syntax: HELO hostname (a domain name or an address literal)")
            return
        self._in_ehlo = bool(hostname)
        try:
            await super().smtp_HELO(ascii_helo(hostname) if hostname else hostname)
        finally:
            self._in_ehlo = False

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        """PLAIN (RFC 4616) as aiosmtpd reads it, but with the authorization identity checked: aiosmtpd drops it,
        and a client that asks to act as someone other than the login must be refused (section 2), not be
        logged in as itself. An empty one, or the login itself (in any case), is fine."""
        if len(args) == 1:
            response = await self.challenge_auth("")
            if response is MISSING:
                return AuthResult(success=False)
        elif args[1] == "=":  # an empty initial response (RFC 4954 section 4)
            response = b""
        else:
            try:
                response = base64.b64decode(args[1].encode(), validate=True)
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(response, bytes)
        fields = response.split(b"\0")
        if len(fields) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        authzid, login, password = fields
        if authzid and authzid.decode("utf-8", "replace").casefold() != login.decode("utf-8", "replace").casefold():
            await self.push("535 5.7.8 Authentication credentials invalid: you can only act as yourself "
                            "(leave the authorization identity empty)")
            return AuthResult(success=False, handled=True)
        return await self._finish_auth(self._authenticate("PLAIN", LoginPassword(login, password)))

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
