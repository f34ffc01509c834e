"""One delivery attempt to another server with aiosmtplib (RFC 5321), opportunistic STARTTLS.

Hosts are tried in order until one answers; what each recipient's reply says is
kept, so the queue can retry the temporary failures and bounce the permanent ones.
TLS is opportunistic (RFC 3207 / RFC 7435): used when offered, certificates not
verified, because MX host names are not authenticated anyway without DANE/MTA-STS;
a host whose STARTTLS handshake fails is tried again at once without TLS. Smarthost
credentials are only ever sent encrypted (port 465, or after STARTTLS).

What goes out depends on what the next hop offers, so the final bytes are made
here, per connection, by the caller's ``prepare``: 7-bit when the hop lacks
8BITMIME (RFC 6152), then DKIM-signed. DSN parameters (RFC 3461) are passed on
to a hop that offers DSN; for one that does not, the caller reports "relayed".
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import aiosmtplib

from kantoor.smtpd.dsn import RecipientDSN
from kantoor.smtpd.seven_bit import ConversionFailed

log = logging.getLogger("kantoor.smtpd.outbound")


@dataclass
class AttemptResult:
    delivered: list[str] = field(default_factory=list)
    temporary: dict[str, str] = field(default_factory=dict)  # recipient → reply
    permanent: dict[str, str] = field(default_factory=dict)
    remote_mtas: dict[str, str] = field(default_factory=dict)  # recipient → the host that answered for it
    dsn_passed: list[str] = field(default_factory=list)  # delivered to a hop that took over DSN duty
    # Recipients whose reply (temporary or permanent) is the remote server's own, not one this server made up
    # (a connection failure, a missing extension): a report says which (RFC 3464 section 2.3.6).
    answered: set[str] = field(default_factory=set)

    def merge(self, other: AttemptResult) -> None:
        self.delivered += other.delivered
        self.answered |= other.answered
        self.dsn_passed += other.dsn_passed
        self.temporary.update(other.temporary)
        self.permanent.update(other.permanent)
        self.remote_mtas.update(other.remote_mtas)


@dataclass(frozen=True)
class Relay:
    """Credentials for a smarthost (never logged)."""

    login: str = ""
    password: str = field(default="", repr=False)


class NextHop(NamedTuple):
    """Where to connect (an address or a host name) and the name to report (RFC 3464 Remote-MTA)."""

    address: str
    port: int
    name: str = ""


@dataclass(frozen=True)
class EnvelopeOptions:
    """The envelope extensions of a queued message (RFC 3461 DSN, RFC 6531 SMTPUTF8)."""

    dsn: dict[str, RecipientDSN] = field(default_factory=dict)
    envid: str = ""  # xtext, as received
    ret: str = ""
    smtputf8: bool = False


def _unchanged(body: bytes, seven_bit: bool) -> bytes:
    return body


def needs_smtputf8(sender: str, recipients: list[str], body: bytes, options: EnvelopeOptions) -> bool:
    """Does the message need the next hop to speak SMTPUTF8? Non-ASCII addresses always do; a message
    received with SMTPUTF8 does when its header section is not ASCII (RFC 6531 section 3.4)."""
    if not (sender.isascii() and all(r.isascii() for r in recipients)):
        return True
    return options.smtputf8 and not body.split(b"\r\n\r\n", 1)[0].isascii()


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}"[:1000]


def _opportunistic_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _split(recipients: list[str], code: int, reply: str, result: AttemptResult) -> None:
    target = result.permanent if 500 <= code < 600 else result.temporary
    for recipient in recipients:
        target[recipient] = reply


async def deliver_remote(hosts: list[NextHop], sender: str, recipients: list[str], body: bytes, *,
                         helo: str, timeout: float, data_timeout: float | None = None, relay: Relay | None = None,
                         options: EnvelopeOptions | None = None,
                         prepare: Callable[[bytes, bool], bytes] = _unchanged) -> AttemptResult:
    """Deliver ``body`` for ``recipients`` to ``hosts`` in order; ``prepare(body, seven_bit)`` makes the bytes to
    send (converted to 7-bit if ``seven_bit``, signed). ``timeout`` holds for connecting and each reply,
    ``data_timeout`` (default: the same) for sending the message and the reply to its end.

    The next host gets what one could not take: every recipient when it cannot be reached or its session breaks
    down, and those it answered with a temporary failure (4xx at MAIL, RCPT or the end of the data) — as Postfix
    does, RFC 5321 section 5.1 — while what it accepted or refused for good stays decided."""
    last_error = "451 4.4.1 No mail host could be reached"
    options = options or EnvelopeOptions()
    result = AttemptResult()
    waiting = list(recipients)
    replies: dict[str, str] = {}  # the last temporary reply each waiting recipient got from a host
    said: set[str] = set()  # those of them whose reply is the host's own
    for host, port, name in hosts:
        # Opportunistic TLS (RFC 7435 section 6.2, Postfix's level "may"): when the STARTTLS handshake fails,
        # the same host is tried again at once without TLS. Never with smarthost credentials: those only go
        # over an encrypted connection.
        for plain in (False, True):
            try:
                attempt = await _deliver_to(host, port, name or host, sender, waiting, body, helo=helo,
                                            timeout=timeout, data_timeout=data_timeout or timeout, relay=relay,
                                            options=options, prepare=prepare, plain=plain)
            except _TLSUnavailable as exc:
                last_error = str(exc)
                if not plain and not _has_credentials(relay) and exc.handshake:
                    log.info("STARTTLS with %s:%d failed (%s); trying again without TLS", host, port, exc)
                    continue
            except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                    aiosmtplib.SMTPHeloError, aiosmtplib.SMTPException, OSError) as exc:
                if isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600 and relay is not None:
                    # A smarthost refusing our login or greeting is a fault of this server's set-up (wrong
                    # password, say), not of the message or its recipients: temporary, so the mail waits for
                    # the administrator instead of bouncing (as Postfix's smtp_sasl_auth_soft_bounce). The
                    # smarthost's own reply is kept as the diagnostic, behind a 4xx code, so a "delayed"
                    # report does not show a permanent status (RFC 3464 section 2.3.4).
                    last_error = _reply(451, f"4.7.0 The smarthost refused us: {_reply(exc.code, exc.message)}")
                else:
                    last_error = f"451 4.4.1 {host}:{port}: {exc.__class__.__name__}: {exc}"[:500]
            else:
                replies.update(attempt.temporary)
                answered = {r for r in attempt.temporary if r in attempt.answered}
                waiting = list(attempt.temporary)
                attempt.temporary = {}
                attempt.answered -= set(waiting)
                result.merge(attempt)
                said = (said - set(waiting)) | answered
                if waiting:
                    log.info("%s:%d deferred %d recipient(s): %s", host, port, len(waiting), replies[waiting[0]])
                break
            log.info("delivery to %s:%d failed: %s", host, port, last_error)
            break
        if not waiting:
            return result
    for recipient in waiting:
        result.temporary[recipient] = replies.get(recipient, last_error)
        if recipient in replies and recipient in said:
            result.answered.add(recipient)
    return result


class _TLSUnavailable(Exception):
    """No TLS with this host: not offered (``handshake`` False) or the STARTTLS exchange failed (True)."""

    def __init__(self, reply: str, handshake: bool) -> None:
        super().__init__(reply)
        self.handshake = handshake


def _has_credentials(relay: Relay | None) -> bool:
    return relay is not None and bool(relay.login)


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO for a server that does not know EHLO (RFC 5321 section 3.2)."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()


async def _secure(client: aiosmtplib.SMTP, host: str, port: int, credentials: bool) -> None:
    """STARTTLS (RFC 3207) when offered; required when credentials are to be sent."""
    await _greet(client)
    if not client.supports_extension("starttls"):
        if credentials:
            # The login would cross the network readable by anyone on the path: not sent; retried later.
            raise _TLSUnavailable("451 4.7.0 smarthost offers no TLS; credentials not sent", handshake=False)
        return
    try:
        await client.starttls()
    except (ssl.SSLError, ConnectionError, aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPResponseException) as exc:
        client.close()
        raise _TLSUnavailable(f"451 4.7.0 {host}:{port}: STARTTLS failed: {exc.__class__.__name__}: {exc}"[:500],
                              handshake=True) from exc


async def _deliver_to(host: str, port: int, name: str, sender: str, recipients: list[str], body: bytes, *, helo: str,
                      timeout: float, data_timeout: float, relay: Relay | None, options: EnvelopeOptions,
                      prepare: Callable[[bytes, bool], bytes], plain: bool = False) -> AttemptResult:
    """One session with one host; ``plain``: without STARTTLS (the retry after a failed handshake)."""
    implicit_tls = relay is not None and port == 465
    client = aiosmtplib.SMTP(hostname=host, port=port, local_hostname=helo, timeout=timeout,
                             use_tls=implicit_tls, start_tls=False,
                             validate_certs=False, tls_context=_opportunistic_context())
    result = AttemptResult(remote_mtas=dict.fromkeys(recipients, name))
    await client.connect()
    try:
        if not implicit_tls and (not plain or _has_credentials(relay)):
            await _secure(client, host, port, _has_credentials(relay))
        if _has_credentials(relay) and relay is not None:
            await client.login(relay.login, relay.password)
        mail_options = []
        utf8 = needs_smtputf8(sender, recipients, body, options)
        if utf8:
            if not client.supports_extension("smtputf8"):
                # RFC 6531 section 3.4: such a message is not sent on without SMTPUTF8; it bounces.
                _split(recipients, 553, "553 5.6.7 The receiving server does not support SMTPUTF8", result)
                return result
            mail_options.append("SMTPUTF8")
        eight_bit = not body.isascii()
        seven_bit = eight_bit and not client.supports_extension("8bitmime") and not utf8
        if eight_bit and not seven_bit:
            mail_options.append("BODY=8BITMIME")
        dsn = client.supports_extension("dsn")
        if dsn:
            if options.ret:
                mail_options.append(f"RET={options.ret}")
            if options.envid:
                mail_options.append(f"ENVID={options.envid}")
        encoding = "utf-8" if utf8 else "ascii"
        try:
            # Parsing, re-encoding and signing a message is CPU work (and reads the key file): not on the loop.
            content = await asyncio.to_thread(prepare, body, seven_bit)
        except ConversionFailed:
            _split(recipients, 554, "554 5.6.3 The message needs 8BITMIME, which the receiving server does not "
                   "offer, and could not be converted to 7-bit", result)
            return result
        try:
            await client.mail(sender, options=mail_options, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            _split(recipients, exc.code, _reply(exc.code, exc.message), result)
            result.answered.update(recipients)
            return result
        accepted = []
        for recipient in recipients:
            rcpt_options = options.dsn.get(recipient, RecipientDSN()).rcpt_parameters() if dsn else []
            try:
                await client.rcpt(recipient, options=rcpt_options, encoding=encoding)
                accepted.append(recipient)
            except aiosmtplib.SMTPResponseException as exc:
                _split([recipient], exc.code, _reply(exc.code, exc.message), result)
                result.answered.add(recipient)
        if not accepted:
            return result
        try:
            await client.data(content, timeout=data_timeout)
        except aiosmtplib.SMTPResponseException as exc:
            _split(accepted, exc.code, _reply(exc.code, exc.message), result)
            result.answered.update(accepted)
            return result
        result.delivered += accepted
        if dsn:
            result.dsn_passed += accepted
        return result
    finally:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()
