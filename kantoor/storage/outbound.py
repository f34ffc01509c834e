"""The outbound mail queue: enqueue, claim, record results, inspect (``OutboundMessage``).

A queued message's body is stored like an item's (inline when small, else a
reference-counted blob), so the blob collector never removes a body the queue
still needs. A delivery worker *claims* due rows for a lease (``claimed_by`` /
``claimed_until``): on PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED`` lets two
processes claim different rows at once; on SQLite the write transaction (BEGIN
IMMEDIATE) already serialises claims. Results are recorded only by the worker
that still holds the claim, so a message whose lease ran out and was taken over
by another process is never recorded twice. A permanent failure and the bounce
it causes are written in ONE transaction: no bounce is lost, none is doubled.

Mail the server itself sends (delivery reports, warnings, later invitations and
sign-up confirmations) enters the same queue through :func:`server_mail` /
:meth:`OutboundMixin.send_server_mail`: From the server's address, the null
envelope sender, DKIM-signed at delivery like every other outbound message.
A *notice* (``ServerNotice``) is a server mail sent once per account and cause,
until the cause is cleared; the row and the mail are written together.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kantoor.config import Settings
from kantoor.storage.errors import NotFound, SendingLimitReached
from kantoor.storage.models import Account, OutboundMessage, Plan, ServerNotice, Usage, utcnow
from kantoor.storage.transactions import Body, StoreBase

QUEUED, DELIVERED, FAILED = "queued", "delivered", "failed"


@dataclass(frozen=True)
class NewOutbound:
    """A message to put in the queue (e.g. the bounce written together with a failure)."""

    sender: str  # envelope MAIL FROM, "" for a bounce
    recipients: list[str]
    body: bytes
    account_id: int | None = None
    expires_in: dt.timedelta = dt.timedelta(days=5)
    dsn_envid: str = ""
    dsn_ret: str = ""
    dsn_recipients: dict[str, dict[str, str]] = field(default_factory=dict)  # see OutboundMessage
    smtputf8: bool = False
    # The account's allowance of queued messages, and of their recipients, per hour (0: no limit): checked in
    # the transaction that queues this one, so parallel sessions of one account cannot each pass a check made
    # before the other's insert.
    hourly_limit: int = 0
    hourly_recipient_limit: int = 0


@dataclass(frozen=True)
class SentCount:
    """What an account queued for other servers in a period: messages, and their recipients."""

    messages: int
    recipients: int


def hourly_limit_reached(sent: SentCount, message_limit: int, recipient_limit: int,
                         recipients: int) -> tuple[int, str] | None:
    """The limit (and "messages" or "recipients") that one more message to ``recipients`` recipients on other
    servers would pass after ``sent`` in the last hour, or None; a limit of 0 is none."""
    if 0 < message_limit <= sent.messages:
        return message_limit, "messages"
    if 0 < recipient_limit < sent.recipients + recipients:
        return recipient_limit, "recipients"
    return None


def dsn_requests_of(message: OutboundMessage) -> dict[str, dict[str, str]]:
    """What each recipient's sender asked for under RFC 3461 (address → {"notify", "orcpt"})."""
    value = json.loads(message.dsn_recipients or "{}")
    return value if isinstance(value, dict) else {}


def server_from_address(settings: Settings) -> str:
    """The From address of mail the server itself sends."""
    return settings.delivery.server_from.strip() or f"postmaster@{settings.server.mail_domain}"


def server_mail(settings: Settings, recipients: list[str], message: EmailMessage | bytes,
                display_name: str = "Mail Delivery System") -> NewOutbound:
    """The queue entry for a message the server sends: From the server's address (unless the message
    has a From), a Date and Message-ID, the null envelope sender so no report loops back
    (RFC 5321 section 4.5.5, RFC 3834 section 3.3)."""
    head = (message.as_bytes(policy=SMTP) if isinstance(message, EmailMessage) else message)
    present = {line.split(b":", 1)[0].strip().lower()
               for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if b":" in line}
    sender = server_from_address(settings)
    domain = sender.rpartition("@")[2] or settings.server.hostname
    added = []
    if b"from" not in present:
        added.append(f"From: {email.utils.formataddr((display_name, sender))}")
    if b"date" not in present:
        added.append(f"Date: {email.utils.format_datetime(email.utils.localtime())}")
    if b"message-id" not in present:
        added.append(f"Message-ID: <{secrets.token_hex(16)}@{domain}>")
    if b"auto-submitted" not in present:
        added.append("Auto-Submitted: auto-generated")
    body = "".join(f"{line}\r\n" for line in added).encode("utf-8") + head
    return NewOutbound("", list(recipients), body,
                       expires_in=dt.timedelta(seconds=settings.delivery.expire_seconds))


def recipients_of(message: OutboundMessage) -> list[str]:
    """The envelope recipients still to deliver."""
    value = json.loads(message.recipients or "[]")
    return [str(r) for r in value] if isinstance(value, list) else []


class OutboundMixin(StoreBase):
    # ------------------------------------------------------------------ queue writes
    def enqueue_outbound(self, message: NewOutbound) -> OutboundMessage:
        """Queue a message for delivery now; returns the row (body columns included)."""
        stored, _sha, _ = self._store_body(message.body, None)
        with self.write() as s:
            if message.account_id is not None and (message.hourly_limit > 0 or message.hourly_recipient_limit > 0):
                self._check_sending_limit(s, message.account_id, message)
            row = self._add_outbound(s, message, stored)
        return row

    def _check_sending_limit(self, s: Session, account_id: int, message: NewOutbound) -> None:
        """SendingLimitReached if queueing ``message`` would take the account past its hourly allowance of
        messages or of recipients. On PostgreSQL the account's row is locked first, so two transactions queueing
        for one account count one after the other (SQLite's write transactions already run one at a time)."""
        if not self._is_sqlite:
            s.execute(select(Account.id).where(Account.id == account_id).with_for_update())
        sent = self._sent_since(s, account_id, utcnow() - dt.timedelta(hours=1))
        reached = hourly_limit_reached(sent, message.hourly_limit, message.hourly_recipient_limit,
                                       len(message.recipients))
        if reached is not None:
            raise SendingLimitReached(*reached)

    def _add_outbound(self, s: Session, message: NewOutbound, stored: Body) -> OutboundMessage:
        if not message.recipients:
            raise ValueError("a queued message needs at least one recipient")
        self._reference_blob(s, stored)
        now = utcnow()
        row = OutboundMessage(
            sender=message.sender, recipients=json.dumps(list(message.recipients)),
            recipient_count=len(message.recipients),
            blob_sha256=stored.blob_sha256, inline_body=stored.inline, size=stored.size,
            account_id=message.account_id, state=QUEUED, attempts=0, next_attempt_at=now,
            expires_at=now + message.expires_in, last_error="", claimed_by="", claimed_until=None,
            dsn_envid=message.dsn_envid, dsn_ret=message.dsn_ret,
            dsn_recipients=json.dumps(message.dsn_recipients), delay_notified=False, smtputf8=message.smtputf8,
            created_at=now)
        s.add(row)
        s.flush()
        return row

    def _release_outbound_body(self, s: Session, row: OutboundMessage) -> None:
        # A finished message keeps its row (for `kantoor queue list`) but not its body.
        if row.blob_sha256 is not None:
            self._release_blobs(s, select(OutboundMessage.blob_sha256).where(OutboundMessage.id == row.id))
        row.blob_sha256 = None
        row.inline_body = None

    def claim_outbound(self, worker: str, lease_seconds: float, limit: int = 10,
                       now: dt.datetime | None = None) -> list[OutboundMessage]:
        """Claim up to ``limit`` due messages for ``worker`` until the lease ends; each goes to one worker."""
        now = now or utcnow()
        query = (select(OutboundMessage)
                 .where(OutboundMessage.state == QUEUED, OutboundMessage.next_attempt_at <= now,
                        or_(OutboundMessage.claimed_until.is_(None), OutboundMessage.claimed_until < now))
                 .order_by(OutboundMessage.next_attempt_at, OutboundMessage.id)
                 .limit(limit))
        if not self._is_sqlite:
            query = query.with_for_update(skip_locked=True)
        with self.write() as s:
            rows = list(s.scalars(query))
            for row in rows:
                row.claimed_by = worker
                row.claimed_until = now + dt.timedelta(seconds=lease_seconds)
        return rows

    def _claimed(self, s: Session, message_id: int, worker: str) -> OutboundMessage | None:
        query = select(OutboundMessage).where(OutboundMessage.id == message_id)
        if not self._is_sqlite:
            query = query.with_for_update()
        row = s.scalar(query)
        if row is None or row.state != QUEUED or row.claimed_by != worker:
            return None  # the lease was lost (or the row deleted): someone else decides now
        return row

    def defer_outbound(self, message_id: int, worker: str, remaining: Iterable[str], error: str,
                       retry_at: dt.datetime, bounce: NewOutbound | None = None, delay_notified: bool = False) -> bool:
        """After an attempt with temporary failures: keep ``remaining`` recipients, try again at ``retry_at``
        (and queue ``bounce`` — a report on this attempt — in the same transaction; ``delay_notified``
        records that it announced the delay, which is done once)."""
        stored = self._store_body(bounce.body, None)[0] if bounce is not None else None
        with self.write() as s:
            row = self._claimed(s, message_id, worker)
            if row is None:
                return False
            row.recipients = json.dumps(list(remaining))
            row.attempts += 1
            row.last_error = error[:2000]
            row.next_attempt_at = retry_at
            row.claimed_by = ""
            row.claimed_until = None
            row.delay_notified = row.delay_notified or delay_notified
            if bounce is not None and stored is not None:
                self._add_outbound(s, bounce, stored)
        return True

    def finish_outbound(self, message_id: int, worker: str, state: str, error: str = "",
                        bounce: NewOutbound | None = None, attempted: bool = True) -> bool:
        """Record the end of a message (``delivered`` or ``failed``), queueing ``bounce`` in the same transaction."""
        if state not in (DELIVERED, FAILED):
            raise ValueError(f"unknown final state {state!r}")
        stored = self._store_body(bounce.body, None)[0] if bounce is not None else None
        with self.write() as s:
            row = self._claimed(s, message_id, worker)
            if row is None:
                return False
            row.state = state
            row.attempts += 1 if attempted else 0
            row.last_error = error[:2000]
            row.claimed_by = ""
            row.claimed_until = None
            self._release_outbound_body(s, row)
            if bounce is not None and stored is not None:
                self._add_outbound(s, bounce, stored)
        return True

    def extend_outbound_claim(self, message_id: int, worker: str, lease_seconds: float) -> bool:
        """Renew a claim while a long delivery is still running; False if the lease was already lost."""
        with self.write() as s:
            row = self._claimed(s, message_id, worker)
            if row is None:
                return False
            row.claimed_until = utcnow() + dt.timedelta(seconds=lease_seconds)
        return True

    def release_outbound(self, message_id: int, worker: str) -> bool:
        """Give a claim back untried (e.g. the server is stopping): due again at once, for anyone."""
        with self.write() as s:
            row = self._claimed(s, message_id, worker)
            if row is None:
                return False
            row.claimed_by = ""
            row.claimed_until = None
        return True

    # ------------------------------------------------------------------ mail from the server
    def send_server_mail(self, message: NewOutbound) -> OutboundMessage:
        """Queue a message the server sends (made by :func:`server_mail`)."""
        return self.enqueue_outbound(message)

    def send_notice_once(self, account_id: int, kind: str, message: NewOutbound) -> bool:
        """Queue ``message`` unless this account already has a ``kind`` notice outstanding; the notice
        row and the queued mail commit together, so two processes never both send it."""
        stored, _sha, _ = self._store_body(message.body, None)
        try:
            with self.write() as s:
                if s.get(ServerNotice, (account_id, kind)) is not None:
                    return False
                s.add(ServerNotice(account_id=account_id, kind=kind, sent_at=utcnow()))
                s.flush()
                self._add_outbound(s, message, stored)
        except IntegrityError:
            return False  # another process sent it a moment ago
        return True

    def clear_notices(self, kind: str, account_ids: Iterable[int]) -> None:
        """The cause is gone: the next time it happens, the notice goes out again."""
        ids = list(account_ids)
        if not ids:
            return
        with self.write() as s:
            s.execute(delete(ServerNotice).where(ServerNotice.kind == kind, ServerNotice.account_id.in_(ids)))

    def mail_usage_for_notice(self, kind: str, percent: int) -> list[tuple[int, str, int, int, bool]]:
        """(account id, login, mail bytes used, capacity, notice outstanding) for every account at or over
        ``percent`` of its plan's mail capacity, and every account with an outstanding ``kind`` notice."""
        used = func.coalesce(Usage.bytes, 0)
        query = (select(Account.id, Account.login, used, Plan.mail_bytes, ServerNotice.account_id)
                 .join(Plan, Plan.name == Account.plan)
                 .outerjoin(Usage, and_(Usage.owner_id == Account.principal_id, Usage.tool == "mail"))
                 .outerjoin(ServerNotice, and_(ServerNotice.account_id == Account.id, ServerNotice.kind == kind))
                 .where(or_(and_(Plan.mail_bytes > 0, used * 100 >= Plan.mail_bytes * percent),
                            ServerNotice.account_id.is_not(None))))
        with self.read() as s:
            return [(int(a), str(login), int(u), int(cap), notice is not None)
                    for a, login, u, cap, notice in s.execute(query)]

    # ------------------------------------------------------------------ administration
    def retry_outbound(self, message_id: int) -> OutboundMessage:
        """Make a queued message due now (``kantoor queue retry``)."""
        with self.write() as s:
            row = s.get(OutboundMessage, message_id)
            if row is None or row.state != QUEUED:
                raise NotFound(f"no queued message {message_id}")
            row.next_attempt_at = utcnow()
        return row

    def delete_outbound(self, *message_ids: int) -> None:
        """Remove messages from the queue without delivering them (``kantoor queue delete``): all or none —
        NotFound naming every unknown id, before anything is deleted; their bodies' blobs are released in the
        same transaction."""
        ids = set(message_ids)
        query = select(OutboundMessage.id).where(OutboundMessage.id.in_(ids))
        if not self._is_sqlite:
            # Locked like a worker's claim (_claimed), so finishing a delivery meanwhile cannot release a body
            # this transaction releases too; on SQLite the write transaction already excludes it.
            query = query.with_for_update()
        with self.write() as s:
            missing = ids - set(s.scalars(query))
            if missing:
                raise NotFound(f"no queued message {', '.join(map(str, sorted(missing)))}")
            # Counted per row: two queued copies of one body hold two references to its blob.
            self._release_blobs(s, select(OutboundMessage.blob_sha256)
                                .where(OutboundMessage.id.in_(ids), OutboundMessage.blob_sha256.is_not(None)))
            s.execute(delete(OutboundMessage).where(OutboundMessage.id.in_(ids)))

    # ------------------------------------------------------------------ reads
    def list_outbound(self, state: str | None = QUEUED) -> list[OutboundMessage]:
        """Queue rows (without bodies), oldest first; ``state`` None lists every state."""
        query = select(OutboundMessage).order_by(OutboundMessage.id)
        if state is not None:
            query = query.where(OutboundMessage.state == state)
        with self.read() as s:
            return list(s.scalars(query))

    def get_outbound(self, message_id: int) -> OutboundMessage:
        with self.read() as s:
            row = s.get(OutboundMessage, message_id)
            if row is None:
                raise NotFound(f"no queued message {message_id}")
            return row

    def outbound_body(self, message: OutboundMessage) -> bytes:
        """The bytes of a queued message."""
        if message.inline_body is not None:
            return message.inline_body
        if message.blob_sha256 is None:
            return b""
        return self.blobs.read(message.blob_sha256)

    def sent_since(self, account_id: int, since: dt.datetime) -> SentCount:
        """How many messages, and recipients, an account queued for other servers since ``since`` (the hourly
        sending limits)."""
        with self.read() as s:
            return self._sent_since(s, account_id, since)

    @staticmethod
    def _sent_since(s: Session, account_id: int, since: dt.datetime) -> SentCount:
        messages, recipients = s.execute(
            select(func.count(), func.coalesce(func.sum(OutboundMessage.recipient_count), 0))
            .where(OutboundMessage.account_id == account_id, OutboundMessage.created_at >= since)).one()
        return SentCount(int(messages or 0), int(recipients or 0))
