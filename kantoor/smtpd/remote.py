"""One delivery attempt to another server with aiosmtplib (RFC 5321), opportunistic STARTTLS.

Hosts are tried in order until one answers; what each recipient's reply says is
kept, so the queue can retry the temporary failures and bounce the permanent ones.
TLS is opportunistic (RFC 3207 / RFC 7435): used when offered, certificates not
verified, because MX host names are not authenticated anyway without DANE/MTA-STS.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field

import aiosmtplib

log = logging.getLogger("kantoor.smtpd.outbound")


@dataclass
class AttemptResult:
    delivered: list[str] = field(default_factory=list)
    temporary: dict[str, str] = field(default_factory=dict)  # recipient → reply
    permanent: dict[str, str] = field(default_factory=dict)
    remote_mta: str = ""  # the host that answered

    def merge(self, other: AttemptResult) -> None:
        self.delivered += other.delivered
        self.temporary.update(other.temporary)
        self.permanent.update(other.permanent)
        self.remote_mta = self.remote_mta or other.remote_mta


@dataclass(frozen=True)
class Relay:
    """Credentials for a smarthost (never logged)."""

    login: str = ""
    password: str = field(default="", repr=False)


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


async def deliver_remote(hosts: list[tuple[str, int]], sender: str, recipients: list[str], body: bytes, *,
                         helo: str, timeout: float, relay: Relay | None = None) -> AttemptResult:
    """Deliver ``body`` for ``recipients`` to the first host of ``hosts`` that accepts a connection."""
    last_error = "451 4.4.1 No mail host could be reached"
    for host, port in hosts:
        try:
            return await _deliver_to(host, port, sender, recipients, body, helo=helo, timeout=timeout, relay=relay)
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                aiosmtplib.SMTPHeloError, aiosmtplib.SMTPException, OSError) as exc:
            if isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600 and relay is not None:
                # A smarthost refusing our login or greeting will not change its mind by itself.
                last_error = _reply(exc.code, exc.message)
            else:
                last_error = f"451 4.4.1 {host}:{port}: {exc.__class__.__name__}: {exc}"[:500]
            log.info("delivery to %s:%d failed: %s", host, port, last_error)
    result = AttemptResult()
    _split(recipients, 451, last_error, result)
    return result


async def _deliver_to(host: str, port: int, sender: str, recipients: list[str], body: bytes, *, helo: str,
                      timeout: float, relay: Relay | None) -> AttemptResult:
    implicit_tls = relay is not None and port == 465
    client = aiosmtplib.SMTP(hostname=host, port=port, local_hostname=helo, timeout=timeout,
                             use_tls=implicit_tls, start_tls=None if not implicit_tls else False,
                             validate_certs=False, tls_context=_opportunistic_context())
    result = AttemptResult(remote_mta=host)
    await client.connect()
    try:
        if relay is not None and relay.login:
            await client.login(relay.login, relay.password)
        options = []
        if not body.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        if utf8:
            if not client.supports_extension("smtputf8"):
                _split(recipients, 553, "553 5.6.7 The receiving server does not support SMTPUTF8", result)
                return result
            options.append("SMTPUTF8")
        encoding = "utf-8" if utf8 else "ascii"
        try:
            await client.mail(sender, options=options, encoding=encoding)
        except aiosmtplib.SMTPResponseException as exc:
            _split(recipients, exc.code, _reply(exc.code, exc.message), result)
            return result
        accepted = []
        for recipient in recipients:
            try:
                await client.rcpt(recipient, encoding=encoding)
                accepted.append(recipient)
            except aiosmtplib.SMTPResponseException as exc:
                _split([recipient], exc.code, _reply(exc.code, exc.message), result)
        if not accepted:
            return result
        try:
            await client.data(body)
        except aiosmtplib.SMTPResponseException as exc:
            _split(accepted, exc.code, _reply(exc.code, exc.message), result)
            return result
        result.delivered += accepted
        return result
    finally:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()
