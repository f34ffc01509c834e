"""The delivery worker: takes due messages from the outbound queue and delivers them.

Runs as one task on the server's loop; every Store call goes to a worker thread.
Local recipients (a bounce to one of our users, for instance) go straight into
their INBOX; remote ones are grouped by domain and sent to the domain's MX (or
the smarthost). Temporary failures are retried with exponential back-off until
the message expires. Delivery status notifications (RFC 3461/3464) go to the
sender through this same queue, per recipient as it asked (NOTIFY): failures,
one "delayed" notice after ``delay_notify_seconds``, "delivered" for local
delivery and "relayed" for a next hop that does not offer DSN itself. Bytes for
another server are made per connection: 7-bit when the hop lacks 8BITMIME, then
DKIM-signed. With several server processes, each message is claimed by exactly
one worker (see :mod:`kantoor.storage.outbound`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import Callable

from kantoor.config import Settings
from kantoor.smtpd import bounce
from kantoor.smtpd.bounce import RecipientReport, report_mail, status_of
from kantoor.smtpd.dsn import RecipientDSN
from kantoor.smtpd.mx import NoMailHost, mail_hosts, make_resolver
from kantoor.smtpd.outbound_settings import DeliverySettings, host_port
from kantoor.smtpd.outgoing import dkim_signed
from kantoor.smtpd.remote import AttemptResult, EnvelopeOptions, NextHop, Relay, deliver_remote
from kantoor.smtpd.seven_bit import to_seven_bit
from kantoor.smtpd.trace import trace_headers
from kantoor.storage import NotFound, QuotaExceeded, StorageError, Store
from kantoor.storage.models import OutboundMessage
from kantoor.storage.outbound import DELIVERED, FAILED, dsn_requests_of, recipients_of

log = logging.getLogger("kantoor.smtpd.outbound")
# How large a message of the server's own may be and still be stored in a full mailbox (see _deliver_locally).
NOTICE_OVER_CAPACITY_BYTES = 64 * 1024
# The reply recorded for a recipient when delivery failed inside this server, not at the next hop.
INTERNAL_ERROR = "451 4.3.0 Internal error during delivery; will retry"
OWN_DIAGNOSTIC = "X-Kantoor"  # the diagnostic-type of a reply this server made (RFC 3464 section 2.3.6)


def retry_delay(attempts: int, delivery: DeliverySettings) -> float:
    """Seconds before the next try after ``attempts`` tries: doubling from the base, capped."""
    return min(delivery.retry_base_seconds * (2 ** max(attempts - 1, 0)), delivery.retry_max_seconds)


class DeliveryWorker:
    def __init__(self, settings: Settings, store: Store, delivery: DeliverySettings) -> None:
        self.settings = settings
        self.store = store
        self.delivery = delivery
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._resolver = make_resolver(delivery)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="smtp-delivery")

    def wake(self) -> None:
        """Something was queued in this process: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop claiming; give deliveries in flight a moment, then cancel them and release their claims."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=grace_seconds)
        for message_id, task in list(self._in_flight.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            # Released, not failed: the next start (of any process) tries it again at once.
            with contextlib.suppress(StorageError):
                await asyncio.to_thread(self.store.release_outbound, message_id, self.name)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            room = self.delivery.concurrency - len(self._in_flight)
            if room > 0:
                try:
                    claimed = await asyncio.to_thread(self.store.claim_outbound, self.name,
                                                      self.delivery.lease_seconds, room)
                except Exception:
                    log.exception("claiming queued mail failed")
                    claimed = []
                for message in claimed:
                    task = asyncio.get_running_loop().create_task(self._process(message))
                    self._in_flight[message.id] = task
                    task.add_done_callback(lambda _t, mid=message.id: self._done(mid))
                if len(claimed) == room:
                    continue  # more may be due
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval())

    def _done(self, message_id: int) -> None:
        self._in_flight.pop(message_id, None)
        self._wake.set()  # room for more

    def _poll_interval(self) -> float:
        return max(min(self.delivery.poll_seconds, self.delivery.retry_base_seconds), 0.05)

    # ------------------------------------------------------------------ one message
    async def _process(self, message: OutboundMessage) -> None:
        heartbeat = asyncio.get_running_loop().create_task(self._keep_claim(message.id))
        try:
            await self._attempt(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Leave the claim to expire: the lease makes sure it is tried again later.
            log.exception("delivery of queued message %d failed unexpectedly", message.id)
        finally:
            heartbeat.cancel()

    async def _keep_claim(self, message_id: int) -> None:
        """Renew the lease while a slow delivery (many hosts, slow servers) runs, so no one else takes it."""
        while True:
            await asyncio.sleep(self.delivery.lease_seconds / 3)
            try:
                if not await asyncio.to_thread(self.store.extend_outbound_claim, message_id, self.name,
                                               self.delivery.lease_seconds):
                    log.warning("queued message %d: lease lost during delivery", message_id)
                    return
            except StorageError:
                log.exception("renewing the claim on queued message %d failed", message_id)

    async def _attempt(self, message: OutboundMessage) -> None:
        body = await asyncio.to_thread(self.store.outbound_body, message)
        recipients = recipients_of(message)
        result = AttemptResult()
        remote: dict[str, list[str]] = {}
        local_delivered = []
        for recipient in recipients:
            try:
                local = await asyncio.to_thread(self._deliver_locally, message.sender, recipient, body)
            except Exception:
                # An internal fault (database, disk) is a temporary failure of this recipient: it is retried
                # with back-off and expires like any other, instead of looping on lease expiry for ever.
                log.exception("queued message %d: local delivery to a recipient failed", message.id)
                result.temporary[recipient] = INTERNAL_ERROR
                continue
            if local is None:
                remote.setdefault(recipient.rpartition("@")[2].lower(), []).append(recipient)
            elif local == "":
                local_delivered.append(recipient)
            elif local.startswith("5"):
                result.permanent[recipient] = local
            else:
                result.temporary[recipient] = local
        result.delivered += local_delivered
        if remote:
            options = EnvelopeOptions(
                dsn={r: RecipientDSN.from_json(d) for r, d in dsn_requests_of(message).items()},
                envid=message.dsn_envid, ret=message.dsn_ret, smtputf8=message.smtputf8)
            try:
                result.merge(await self._deliver_remotely(message.sender, remote, body, options))
            except Exception:
                # e.g. an unreadable DKIM key: every remote recipient waits for the next try (and expires).
                log.exception("queued message %d: remote delivery failed unexpectedly", message.id)
                result.temporary.update({r: INTERNAL_ERROR for rs in remote.values() for r in rs})
        await self._record(message, body, result, local_delivered)

    def _deliver_locally(self, sender: str, recipient: str, body: bytes) -> str | None:
        """"" when delivered here, an SMTP reply when it failed, None when the recipient is not ours."""
        account = self.store.resolve_recipient(recipient)
        if account is None:
            domain = recipient.rpartition("@")[2]
            return "550 5.1.1 No such mailbox here" if self.store.is_local_domain(domain) else None
        trace = trace_headers(mail_from=sender or "<>", helo=self.settings.server.hostname, peer_ip="127.0.0.1",
                              hostname=self.settings.server.hostname, protocol="local", recipient=recipient)
        # The server's own mail (reports, warnings) reaches a full mailbox when it is short: "your mailbox is almost
        # full" would otherwise wait for room until it expired. Told by its null reverse path: only the server
        # queues such mail for a local recipient (users' null-sender mail to local recipients is delivered at
        # DATA, and the MX keeps no copy of it for a full mailbox: MailHandler.handle_DATA).
        own_notice = not sender and len(body) <= NOTICE_OVER_CAPACITY_BYTES
        try:
            inbox = self.store.mailbox(account.principal_id, "INBOX")
            self.store.deliver_message(inbox.id, trace + body, over_capacity=own_notice)
        except NotFound:
            return "550 5.1.1 Mailbox unavailable"
        except QuotaExceeded:
            return "452 4.2.2 Mailbox full"
        return ""

    def _prepare(self, sender: str) -> Callable[[bytes, bool], bytes]:
        """The bytes for one next hop: converted to 7-bit if it needs that, then DKIM-signed (in that order,
        or the conversion would break the signature)."""
        data_dir, selector = self.settings.data_dir, self.delivery.dkim_selector
        # One attempt sends the same body to every next hop (each domain, each MX host that answers):
        # converted and signed once per form, not once per hop (an RSA signature is ~1 ms of CPU).
        made: dict[bool, tuple[bytes, bytes]] = {}

        def prepare(body: bytes, seven_bit: bool) -> bytes:
            kept = made.get(seven_bit)
            if kept is not None and kept[0] is body:
                return kept[1]
            content = to_seven_bit(body) if seven_bit else body
            signed = dkim_signed(content, sender, data_dir, selector)
            made[seven_bit] = (body, signed)
            return signed
        return prepare

    async def _deliver_remotely(self, sender: str, by_domain: dict[str, list[str]], body: bytes,
                                options: EnvelopeOptions) -> AttemptResult:
        result = AttemptResult()
        helo = self.settings.server.hostname
        timeout = self.delivery.connect_timeout_seconds
        prepare = self._prepare(sender)
        if self.delivery.smarthost:
            relay = Relay(self.delivery.smarthost_login, self.delivery.smarthost_password)
            everyone = [r for rs in by_domain.values() for r in rs]
            host, port = host_port(self.delivery.smarthost, 587 if relay.login else 25)
            return await deliver_remote([NextHop(host, port, host)], sender, everyone, body, helo=helo,
                                        timeout=timeout, data_timeout=self.delivery.data_timeout_seconds,
                                        relay=relay, options=options, prepare=prepare)
        for domain, recipients in by_domain.items():
            # Each domain on its own: a fault with one must not take back what another's hosts accepted (its
            # recipients would get the message again on every retry).
            try:
                hosts = await mail_hosts(domain, self.delivery, self._resolver,
                                         own_names=frozenset({helo.lower().rstrip(".")}))
                result.merge(await deliver_remote(hosts, sender, recipients, body, helo=helo, timeout=timeout,
                                                  data_timeout=self.delivery.data_timeout_seconds,
                                                  options=options, prepare=prepare))
            except NoMailHost as exc:
                target = result.permanent if exc.permanent else result.temporary
                target.update(dict.fromkeys(recipients, exc.reply))
            except Exception:
                log.exception("remote delivery to the domain %s failed unexpectedly", domain)
                result.temporary.update(dict.fromkeys(recipients, INTERNAL_ERROR))
        return result

    def _reports(self, message: OutboundMessage, result: AttemptResult, local_delivered: list[str],
                 failures: dict[str, str], now: dt.datetime, deferred: bool) -> tuple[list[RecipientReport], bool]:
        """What this attempt tells the sender, per recipient as each asked (RFC 3461 section 4.1), and
        whether the one "delayed" notice is now given."""
        requests = {r: RecipientDSN.from_json(d) for r, d in dsn_requests_of(message).items()}

        def report(recipient: str, action: str, status: str, diagnostic: str = "", mta: str = "",
                   until: dt.datetime | None = None) -> RecipientReport:
            original = requests.get(recipient, RecipientDSN()).original_recipient()
            whose = "smtp" if recipient in result.answered else OWN_DIAGNOSTIC
            return RecipientReport(recipient, action, status, diagnostic, remote_mta=mta, original_recipient=original,
                                   will_retry_until=until, diagnostic_type=whose)

        def wants(recipient: str, event: str) -> bool:
            return requests.get(recipient, RecipientDSN()).wants(event)

        reports = [report(r, bounce.FAILED, status_of(reply, expired=r in result.temporary), reply,
                          result.remote_mtas.get(r, ""))
                   for r, reply in failures.items() if wants(r, "FAILURE")]
        reports += [report(r, bounce.DELIVERED, "2.0.0") for r in local_delivered if wants(r, "SUCCESS")]
        reports += [report(r, bounce.RELAYED, "2.0.0", mta=result.remote_mtas.get(r, "")) for r in result.delivered
                    if r not in local_delivered and r not in result.dsn_passed and wants(r, "SUCCESS")]
        delay_due = (deferred and not message.delay_notified
                     and now - message.created_at >= dt.timedelta(seconds=self.delivery.delay_notify_seconds))
        if delay_due:
            reports += [report(r, bounce.DELAYED, status_of(reply), reply, result.remote_mtas.get(r, ""),
                               until=message.expires_at)
                        for r, reply in result.temporary.items() if wants(r, "DELAY")]
        return reports, delay_due

    async def _record(self, message: OutboundMessage, body: bytes, result: AttemptResult,
                      local_delivered: list[str]) -> None:
        now = dt.datetime.now(dt.UTC)
        # The last retry is at the expiry time itself, not one back-off step before it; the message expires
        # (4.4.7) only when an attempt made at or after that time fails.
        retry_at = min(now + dt.timedelta(seconds=retry_delay(message.attempts + 1, self.delivery)),
                       message.expires_at)
        expired = bool(result.temporary) and now >= message.expires_at
        failures = dict(result.permanent)
        if expired:
            failures.update(result.temporary)
        deferred = bool(result.temporary) and not expired
        reports, delay_notified = self._reports(message, result, local_delivered, failures, now, deferred)
        # Building a report copies the original (up to FULL_RETURN_LIMIT): a thread's work.
        notice = await asyncio.to_thread(
            lambda: report_mail(self.settings, sender=message.sender, reports=reports, original=body,
                                arrival=message.created_at, envid=message.dsn_envid, ret=message.dsn_ret))
        log.info("queued message %d: delivered %d, failed %d, deferred %d", message.id, len(result.delivered),
                 len(failures), len(result.temporary) if deferred else 0)
        if deferred:
            error = "; ".join(f"<{r}>: {reply}" for r, reply in result.temporary.items())
            await asyncio.to_thread(self.store.defer_outbound, message.id, self.name, list(result.temporary),
                                    error, retry_at, notice, delay_notified)
            if notice is not None:
                self.wake()
            return
        state = FAILED if failures and not result.delivered else DELIVERED
        error = "; ".join(f"<{r}>: {reply}" for r, reply in failures.items())
        await asyncio.to_thread(self.store.finish_outbound, message.id, self.name, state, error, notice)
        if notice is not None:
            self.wake()
