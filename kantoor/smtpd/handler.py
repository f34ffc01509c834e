"""The aiosmtpd handler: what MAIL, RCPT and DATA mean on this server.

Unauthenticated sessions (MX) may only send to local recipients. Authenticated
sessions (submission, or AUTH on the MX port) must use one of their own addresses
as sender. Store calls run in worker threads. A recipient that asked for a
success DSN (RFC 3461 NOTIFY=SUCCESS) and was delivered here gets its
"delivered" report queued right after the delivery.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException

from kantoor.config import Settings
from kantoor.quota import QuotaEngine
from kantoor.smtpd.addresses import is_mailbox, untagged
from kantoor.smtpd.authorship import authors, odd_header_line
from kantoor.smtpd.authresults import authentication_results, strip_forged
from kantoor.smtpd.bounce import DELIVERED, RecipientReport, report_mail
from kantoor.smtpd.delivery import deliver
from kantoor.smtpd.header_completion import completed
from kantoor.smtpd.login import SubmitIdentity
from kantoor.smtpd.mail_loop import hop_limit_reply
from kantoor.smtpd.outbound_settings import DeliverySettings
from kantoor.smtpd.outgoing import queue_for_remote, sending_limit_reached, sent_last_hour
from kantoor.smtpd.protocol import KantoorEnvelope, KantoorSession
from kantoor.smtpd.recipient_cache import RecipientCache
from kantoor.smtpd.recipients import decide_recipient, local_decision
from kantoor.smtpd.trace import new_trace_id, protocol_name, trace_headers
from kantoor.storage import SendingLimitReached, StorageError, Store
from kantoor.storage.models import Account
from kantoor.worker_threads import WorkerThreads

log = logging.getLogger("kantoor.smtpd")
T = TypeVar("T")
# A message at least this large is scanned (bare CR/LF, Received: fields) in a worker thread, not on the loop.
_SCAN_ON_LOOP_BYTES = 4 * 1024 * 1024

MAX_RECIPIENTS = 100  # per message; RFC 5321 section 4.5.3.1.8 asks for at least 100
NULL_SENDER = "<>"


def has_bare_cr_or_lf(content: bytes) -> bool:
    """RFC 5321 section 2.3.8: CR and LF only ever travel together. A lone one is how "SMTP smuggling"
    hides a second message inside the first, so such a message is refused whole. Three counts in C
    (a regex with look-arounds took ~3 ms per 50 KiB message, on the event loop)."""
    pairs = content.count(b"\r\n")
    return content.count(b"\r") != pairs or content.count(b"\n") != pairs


def has_nul(content: bytes) -> bool:
    """A NUL octet: in no SMTP DATA without BINARYMIME (RFC 3030, not offered) — RFC 5322's text and RFC 6152's
    8-bit lines exclude it — and in no IMAP literal either (RFC 3501 section 4.3), so such a message could not
    even be read back as sent. Refused whole, as a bare CR or LF is."""
    return b"\x00" in content


def _size_hint(mail_options: list[str]) -> int:
    for option in mail_options:
        key, _, value = option.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def address_problem(address: str, smtputf8: bool, sender: bool = False, as_sent: str = "") -> str | None:
    """The reply refusing an address that is not acceptable text or not RFC 5321 syntax, or None;
    ``as_sent`` is the address as the client wrote it (aiosmtpd's parser forgives comments)."""
    if not address.isascii():
        if not smtputf8:
            return "553 5.6.7 Non-ASCII address needs the SMTPUTF8 parameter"
        try:
            address.encode("utf-8")  # aiosmtpd keeps undecodable bytes as surrogates
        except UnicodeEncodeError:
            return "553 5.6.7 Address is not valid UTF-8"
    if sender and address == NULL_SENDER:
        return None
    if not sender and address.lower() == "postmaster":
        return None  # RFC 5321 section 4.5.1: the one address without a domain
    if not sender and address == NULL_SENDER:
        return "501 5.1.3 The null path <> is no recipient"
    if not is_mailbox(address, smtputf8) or (as_sent and as_sent != address and not is_mailbox(as_sent, smtputf8)):
        # RFC 3463: X.1.7 is the sender's address syntax, X.1.3 a recipient's.
        return (f"501 5.1.7 <{address}>: bad sender address syntax" if sender
                else f"501 5.1.3 <{address}>: bad recipient address syntax")
    return None


def _remote_key(address: str) -> str:
    """When two remote recipients are one: the domain in any case, the local part exactly (RFC 5321 section 2.4:
    only the receiving server may treat it as case-insensitive)."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


class MailHandler:
    def __init__(self, settings: Settings, store: Store, quota: QuotaEngine, delivery: DeliverySettings,
                 queued: Callable[[], None] = lambda: None, threads: WorkerThreads | None = None) -> None:
        self.settings = settings
        self.store = store
        self.quota = quota
        self.delivery = delivery
        self.queued = queued  # wakes this process's delivery worker
        # Where Store calls and the MX checks run: the SMTP server's threads (worker_threads.py).
        self.in_thread: Callable[..., Awaitable[Any]] = threads.run if threads is not None else asyncio.to_thread
        self.recipients = RecipientCache()  # RCPT look-ups of the last second, answered on the loop

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd has no ENHANCEDSTATUSCODES of its own; KantoorSMTP.push adds the codes.
        # PIPELINING (RFC 2920): aiosmtpd reads commands from a buffered stream one by one
        # and answers each in order, never dropping buffered input, so a batch sent in
        # one write gets every reply in order (tests/smtpd/test_smtp_pipelining.py).
        return responses[:-1] + ["250-PIPELINING", "250-DSN", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        assert isinstance(session, KantoorSession) and isinstance(envelope, KantoorEnvelope)
        if problem := address_problem(address, envelope.smtp_utf8, sender=True, as_sent=envelope.path):
            return problem
        identity = session.identity
        if identity is not None:
            # The null sender is allowed: mail clients send read receipts (RFC 8098 section 2.1) and other
            # notifications with it; the From: check at DATA still holds such mail to the account's addresses.
            if address == NULL_SENDER:
                account = await self.in_thread(self.store.get_account_by_principal, identity.principal_id)
            else:
                account = await self.in_thread(self._account_of, address)
            if account is None or account.id != identity.account_id:
                return (f"550 5.7.1 <{address}>: not an address of {identity.login}; send from your own "
                        "address or one of your aliases")
            if account.state != "active":  # disabled while this session was open
                return f"550 5.7.1 The account {identity.login} is {account.state}; it cannot send mail"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.size_hint = _size_hint(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        assert isinstance(session, KantoorSession) and isinstance(envelope, KantoorEnvelope)
        if problem := address_problem(address, envelope.smtp_utf8, as_sent=envelope.path):
            return problem
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 Too many recipients (at most {MAX_RECIPIENTS} per message)"
        known = self.recipients.get(address)
        if known is not None:
            decision = local_decision(self.quota, known, address, envelope.size_hint)
        else:
            decision = await self.in_thread(
                decide_recipient, self.store, self.quota, address, session.identity is not None, envelope.size_hint,
                self.settings.server.mail_domain)
            if decision.found is not None:
                self.recipients.put(address, decision.found)
        if decision.remote and session.identity is not None:
            if envelope.sent_last_hour is None:  # read once per transaction, at its first remote recipient
                envelope.sent_last_hour = await self.in_thread(sent_last_hour, self.store,
                                                               session.identity.account_id)
            adding = 0 if _remote_key(address) in map(_remote_key, envelope.remote) else 1
            if reached := sending_limit_reached(self.delivery, envelope.sent_last_hour, len(envelope.remote) + adding):
                # Temporary (RFC 3463 4.7.1), as Postfix's rate limits answer: the allowance comes back within the
                # hour. The recipients accepted before this one stay accepted.
                return f"450 4.7.1 <{address}>: {reached}; try again later"
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            envelope.dsn[address] = envelope.pending_dsn
            if _remote_key(address) not in map(_remote_key, envelope.remote):
                envelope.remote.append(address)
        elif decision.principal_id is not None and decision.inbox_id is not None:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            envelope.dsn[address] = envelope.pending_dsn
            # An alias and the login (or user+tag) of one account get one copy.
            envelope.inboxes.setdefault(decision.principal_id, decision.inbox_id)
            envelope.recipients.setdefault(decision.principal_id, address)
        return decision.reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(session, KantoorSession) and isinstance(envelope, KantoorEnvelope)
        envelope.trace_id = new_trace_id()
        reply = await self._data(session, envelope)
        if not reply.startswith("250"):  # the accepted ones are logged with what became of them (_data)
            log.info("smtp %s id %s from %s: refused, %s", session.client_ip, envelope.trace_id, envelope.mail_from,
                     reply)
        return reply

    async def _data(self, session: KantoorSession, envelope: KantoorEnvelope) -> str:
        """The reply to the end of DATA: the message checked, completed and delivered or queued, or refused."""
        content = envelope.original_content or b""
        bare = envelope.bare_line_ending  # KantoorSMTP's DATA reader looks while it checks the line lengths
        if bare is None:  # read by aiosmtpd's own DATA
            bare = await self._scan(has_bare_cr_or_lf, content)
        if bare:
            return ("554 5.5.2 Message has a bare CR or LF; lines must end with CRLF (RFC 5321 section 2.3.8); "
                    "nothing was delivered")
        if await self._scan(has_nul, content):
            return "554 5.6.0 Message has a NUL character (not allowed in SMTP DATA, RFC 6152); nothing was delivered"
        if loop := await self._scan(hop_limit_reply, content, self.settings.limits.max_received_headers):
            log.warning("smtp %s id %s from %s: a mail loop", session.client_ip, envelope.trace_id, envelope.mail_from)
            return loop
        if session.identity is not None:
            # Parsing the header (its size bounded only by the message's) and the alias look-ups: a thread's work.
            problem, content = await self.in_thread(self._submitted_header, session.identity,
                                                    envelope.mail_from or "", content)
            if problem:
                return problem
        headers = trace_headers(
            mail_from=envelope.mail_from or NULL_SENDER,
            helo=session.host_name or "",
            peer_ip=session.client_ip,
            hostname=self.settings.server.hostname,
            protocol=protocol_name(session.extended_smtp, session.encrypted, session.identity is not None,
                                   envelope.smtp_utf8),
            recipient=envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None,
            tls=session.tls,
            trace_id=envelope.trace_id,
        )
        # Mail from other servers: say what SPF, DKIM and DMARC found (RFC 8601) — in the delivery's
        # worker thread when there is one (the checks block on DNS), so a message costs one hop.
        prepare = (functools.partial(self._authenticated_content, session, envelope) if session.identity is None
                   else None)
        reply = ""
        if envelope.inboxes:
            # A full mailbox among several recipients holds back only its own copy (see deliver). Not for the
            # null sender: the queue takes null-sender mail for the server's own, which may pass a full mailbox.
            defer = (functools.partial(self._keep_for_full_mailboxes, session, envelope)
                     if envelope.mail_from not in (None, NULL_SENDER) else None)
            reply, content, deferred = await deliver(self.store, self.quota, envelope.inboxes, envelope.recipients,
                                                     headers, content, prepare=prepare, in_thread=self.in_thread,
                                                     defer=defer)
            if not reply.startswith("250"):
                return reply
            self.recipients.delivered([a for a in envelope.recipients.values() if a not in deferred],
                                      len(headers) + len(content))
            if deferred:
                self.queued()
            await self._report_local_delivery(envelope, headers + content, deferred)
        elif prepare is not None:
            content = await self.in_thread(prepare, content)
        if envelope.remote:
            reply = await self._queue(session, envelope, content, local_reply=reply)
        if reply.startswith("250"):  # a refusal from the queue (the sending limit) is logged by handle_DATA
            log.info("smtp %s id %s from %s: %d bytes for %d local and %d remote recipient(s): %s", session.client_ip,
                     envelope.trace_id, envelope.mail_from, len(content), len(envelope.inboxes), len(envelope.remote),
                     reply[:3])
        return reply

    async def _scan(self, check: Callable[..., T], content: bytes, *args: Any) -> T:
        """``check(content, *args)``: on the loop for a message of up to _SCAN_ON_LOOP_BYTES (a C-speed scan of
        a usual message costs less than a thread hop), in a worker thread for a larger one."""
        if len(content) < _SCAN_ON_LOOP_BYTES:
            return check(content, *args)
        return await self.in_thread(check, content, *args)

    def _account_of(self, address: str) -> Account | None:
        """The account ``address`` belongs to: its login or alias, or one of those with a ``+tag`` — mail to
        ``user+tag@`` reaches ``user``, so ``user`` may send as it too (a reply from the address a list was
        subscribed with). Runs in a worker thread."""
        account = self.store.get_account(address)
        if account is None and (base := untagged(address)) is not None:
            account = self.store.get_account(base)
        return account

    def _submitted_header(self, identity: SubmitIdentity, mail_from: str, content: bytes) -> tuple[str, bytes]:
        """(the DATA reply refusing a submitted message, or ""; the content with what RFC 6409 section 8 adds).
        Refused: a header line that is not a field, or an author address (From:, Sender:) that is not the
        account's own; the envelope sender was checked at MAIL, so only other addresses are looked up. Runs in
        a worker thread."""
        if (odd := odd_header_line(content)) is not None:
            return (f"554 5.6.0 Header line {odd} is not a header field (RFC 5322 section 2.2: a name, then a colon "
                    "at once); nothing was delivered"), content
        sender = "" if mail_from == NULL_SENDER else mail_from
        content = completed(content, self.settings.server.hostname, sender)
        found = authors(content)
        if found.unreadable:
            return (f"550 5.7.1 The {found.unreadable}: header field is not a list of plain addresses; send from "
                    "your own address or one of your aliases. Nothing was delivered"), content
        if not found.addresses:  # only sent with the null sender (a missing From is the envelope sender otherwise)
            return ("550 5.7.1 The message has no From: header field (RFC 5322 section 3.6); nothing was "
                    "delivered"), content
        for address in found.addresses:
            if address == sender.lower():
                continue
            account = self._account_of(address)
            if account is None or account.id != identity.account_id:
                return (f"550 5.7.1 <{address}> in an author field (From:, Sender:) is not an address of "
                        f"{identity.login}; send from your own address or one of your aliases. Nothing was "
                        "delivered"), content
        return "", content

    def _keep_for_full_mailboxes(self, session: KantoorSession, envelope: KantoorEnvelope, addresses: list[str],
                                  content: bytes) -> None:
        """Queue ``content`` for local recipients whose mailbox is full (in a worker thread): the queue delivers
        it once there is room, or bounces it to the sender when it expires."""
        received = trace_headers(
            mail_from=envelope.mail_from or NULL_SENDER, helo=session.host_name or "", peer_ip=session.client_ip,
            hostname=self.settings.server.hostname,
            protocol=protocol_name(session.extended_smtp, session.encrypted, session.identity is not None,
                                   envelope.smtp_utf8),
            recipient=addresses[0] if len(addresses) == 1 else None, return_path=False, tls=session.tls,
            trace_id=envelope.trace_id)
        queue_for_remote(self.store, self.delivery, sender=envelope.mail_from or "", recipients=addresses,
                         trace=received, content=content, account_id=None, mail_options=list(envelope.mail_options),
                         envid=envelope.dsn_envid, dsn=dict(envelope.dsn), smtputf8=envelope.smtp_utf8)

    async def _report_local_delivery(self, envelope: KantoorEnvelope, delivered: bytes,
                                     deferred: Sequence[str] = ()) -> None:
        """Queue the "delivered" DSN for local recipients that asked for one (RFC 3461 section 4.1); not for the
        ``deferred`` ones (their copy waits in the queue, which reports on it)."""
        sender = "" if envelope.mail_from in (None, NULL_SENDER) else (envelope.mail_from or "")
        remote = {r.lower() for r in envelope.remote} | {r.lower() for r in deferred}
        reports = [RecipientReport(a, DELIVERED, "2.0.0", original_recipient=d.original_recipient())
                   for a, d in envelope.dsn.items() if a.lower() not in remote and d.wants("SUCCESS")]
        if not sender or not reports:
            return

        def send() -> None:  # builds the report (a copy of the header) and queues it: a thread's work
            notice = report_mail(self.settings, sender=sender, reports=reports, original=delivered,
                                 arrival=dt.datetime.now(dt.UTC), envid=envelope.dsn_envid)
            if notice is not None:
                self.store.send_server_mail(notice)
        try:
            await self.in_thread(send)
        except StorageError:
            # The message is delivered; a lost success report is not worth failing it for.
            log.exception("queueing a delivery report failed")
            return
        self.queued()

    def _authenticated_content(self, session: KantoorSession, envelope: KantoorEnvelope, content: bytes) -> bytes:
        authserv_id = self.settings.server.hostname
        content = strip_forged(content, authserv_id)
        field = authentication_results(content, authserv_id=authserv_id, ip=session.client_ip,
                                       mail_from=envelope.mail_from or NULL_SENDER, helo=session.host_name or "")
        return field + content

    async def _queue(self, session: KantoorSession, envelope: KantoorEnvelope, content: bytes,
                     local_reply: str) -> str:
        assert session.identity is not None
        received = trace_headers(
            mail_from=envelope.mail_from or NULL_SENDER, helo=session.host_name or "", peer_ip=session.client_ip,
            hostname=self.settings.server.hostname,
            protocol=protocol_name(session.extended_smtp, session.encrypted, True, envelope.smtp_utf8),
            recipient=envelope.remote[0] if len(envelope.remote) == 1 else None, return_path=False,
            tls=session.tls, trace_id=envelope.trace_id)
        sender = "" if envelope.mail_from in (None, NULL_SENDER) else envelope.mail_from
        try:
            queue_id = await self.in_thread(functools.partial(
                queue_for_remote, self.store, self.delivery, sender=sender,
                recipients=list(envelope.remote), trace=received, content=content,
                account_id=session.identity.account_id, mail_options=list(envelope.mail_options),
                envid=envelope.dsn_envid, dsn=dict(envelope.dsn), smtputf8=envelope.smtp_utf8))
        except SendingLimitReached as reached:
            # Parallel sessions of the account passed the check at RCPT together; the queue counted them one by one.
            return (f"450 4.7.1 Sending limit of {reached.limit} {reached.unit} per hour on other servers reached; "
                    "nothing was queued for them, try again later")
        except StorageError:
            log.exception("queueing a submitted message failed")
            # Even when local copies are in: a duplicate for them beats a silent loss for the others.
            return "451 4.3.0 Could not queue the message; try again later"
        self.queued()
        local = f"{local_reply.split(': ', 1)[-1]}, " if local_reply else ""
        return f"250 2.0.0 OK: {local}queued as {queue_id} for {len(envelope.remote)} remote recipient(s)"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # A client (or scanner) that fails the handshake; aiosmtpd closes the connection.
            log.info("STARTTLS handshake failed: %s", error.__cause__)
            return "454 4.7.0 TLS handshake failed"
        # Never show internals to the client; the session stays usable.
        log.error("SMTP session error", exc_info=error)
        return "451 4.3.0 Local error in processing; try again later"
