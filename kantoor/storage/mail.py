"""Messages: delivery, the one call SMTP and IMAP APPEND share.

Delivery computes the message index once (:mod:`kantoor.storage.message_index`:
ENVELOPE/BODYSTRUCTURE wire forms, decoded headers and text) and stores it with
the message; COPY and MOVE reuse it (:mod:`kantoor.storage.imap_state`). What IMAP
reads is in :mod:`kantoor.storage.mail_views`, shared mailboxes in
:mod:`kantoor.storage.shared_mail`; both are part of :class:`MailMixin`.

The body is stored and indexed before the write transaction; deliveries that wait
for the transaction at the same time (eight SMTP sessions, an IMAP APPEND) are
written together in one (group commit), each caller returning after that commit.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from kantoor.storage.errors import NotFound, StorageError
from kantoor.storage.indexing import ItemIndex
from kantoor.storage.mail_flags import check_flags_size, is_private_view, split_flags
from kantoor.storage.mail_views import _INSERT_HEADERS, _INSERT_TEXT, MailViewsMixin, _index_columns
from kantoor.storage.message_index import MAX_PARSE, MessageIndex, index_message_bytes
from kantoor.storage.models import Collection, Item, MailUserFlags, MessageFlags, utcnow
from kantoor.storage.names import normalize_flags
from kantoor.storage.shared_mail import SharedMailMixin
from kantoor.storage.transactions import _INSERT_CHANGE, Body, body_columns, insert_detached_many


@dataclass
class _Delivery:
    """One deliver_message_to_mailboxes call, prepared (body stored, index computed), waiting to be written."""

    mailbox_ids: list[int]
    stored: Body
    sha: str
    cache: MessageIndex
    index: ItemIndex
    flags: list[str]
    actor: int | None
    internaldate: dt.datetime | None
    result: dict[int, Item] | None = None
    error: BaseException | None = None
    done: bool = False
    # IMAP APPEND names its mailbox (owner, path): it is looked up in each write transaction the delivery
    # is tried in (see MailMixin.append_message), which then fills ``mailbox_ids`` and ``mailboxes``.
    named: tuple[int, str] | None = None
    mailboxes: dict[int, Collection] = field(default_factory=dict)


@dataclass
class _DeliveryGroup:
    """This Store's deliveries waiting for a transaction, and the lock whoever writes them holds."""

    lock: threading.Lock = field(default_factory=threading.Lock)  # guards ``pending`` and ``preparing``
    leader: threading.Lock = field(default_factory=threading.Lock)
    pending: list[_Delivery] = field(default_factory=list)
    preparing: int = 0  # deliveries storing and indexing their message now, about to join ``pending``
    arrived: threading.Condition = field(init=False)  # notified (under ``lock``) when ``preparing`` drops

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)


# How long a group's leader waits for deliveries still being prepared (body stored, message indexed) in this
# process before it writes: a transaction costs ~1 ms of CPU alone and ~0.5 ms per message in a group of four
# (SQLite; the page writes and the statements are shared), and with several SMTP sessions per process the
# groups were ~1.7 messages. Bounded, and no wait at all when nobody else is preparing (one IMAP session).
_GATHER_SECONDS = 0.002


# The threads that write delivered bodies to blob files (see MailMixin._store_and_index); a pool starts
# its threads on first use. A forked server worker (kantoor.prefork) gets a pool of its own: the
# parent's threads do not exist in the child, and the copied pool would wait for them forever.
def _new_blob_writer() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="kantoor-blob-write")


_BLOB_WRITER = _new_blob_writer()


def _renew_blob_writer_after_fork() -> None:
    global _BLOB_WRITER
    _BLOB_WRITER = _new_blob_writer()


os.register_at_fork(after_in_child=_renew_blob_writer_after_fork)


_ITEMS = Item.__table__
_COLLECTIONS = Collection.__table__
_UPDATE_MAILBOX = (update(_COLLECTIONS).where(_COLLECTIONS.c.id == bindparam("mailbox"))
                   .values(uidnext=bindparam("new_uidnext"), modseq=bindparam("new_modseq"),
                           updated_at=bindparam("new_updated_at")))
_MAILBOX_COUNTERS = ("uidnext", "modseq", "updated_at")
_INSERT_FLAGS = insert(MessageFlags.__table__)
# An APPEND's mailbox by name (MailMixin._resolve_named). In a PostgreSQL group only the id is read: the row is
# then locked and loaded by id in the group's lock order, and the counters the delivery uses are the ones read
# under the lock, never an older unlocked read kept by the session's identity map.
_MAILBOX_ID_BY_PATH = select(_COLLECTIONS.c.id).where(
    _COLLECTIONS.c.owner_id == bindparam("owner"), _COLLECTIONS.c.kind == "mailbox",
    _COLLECTIONS.c.path == bindparam("path"))
_MAILBOX_BY_PATH = select(Collection).where(
    Collection.owner_id == bindparam("owner"), Collection.kind == "mailbox", Collection.path == bindparam("path"))
_MAILBOX_BY_PATH_FOR_UPDATE = _MAILBOX_BY_PATH.with_for_update()


def _save_mailbox_counters(s: Session) -> None:
    """Write the UID and modseq counters of the mailboxes this transaction delivered to with one Core UPDATE
    each, and tell the ORM they are saved (its unit of work for the one changed Collection cost more than
    the statement). Only these columns: nothing else of a mailbox changes in a delivery. Called last in the
    transaction: the mailboxes then leave the session, since an object once changed stays on the session's
    dirty list (set_committed_value does not take it off) and the commit would run a flush over it that
    finds nothing to write — ~4 % of an APPEND's CPU."""
    locked = s.info.pop("locked_mailboxes", {})
    for coll in locked.values():
        s.connection().execute(_UPDATE_MAILBOX, {"mailbox": coll.id, "new_uidnext": coll.uidnext,
                                                 "new_modseq": coll.modseq, "new_updated_at": coll.updated_at})
        for attribute in _MAILBOX_COUNTERS:
            set_committed_value(coll, attribute, getattr(coll, attribute))
        s.expunge(coll)


class MailMixin(MailViewsMixin, SharedMailMixin):
    # ------------------------------------------------------------------ mail
    def mailbox(self, owner_id: int, name: str, actor: int | None = None) -> Collection:
        if name.upper() == "INBOX":
            name = "INBOX"
        return self.find_collection(owner_id, "mailbox", name, actor)

    def deliver_message(
        self,
        mailbox_id: int,
        raw: bytes | BinaryIO,
        actor: int | None = None,
        flags: Iterable[str] = (),
        internaldate: dt.datetime | None = None,
        max_size: int | None = None,
    ) -> Item:
        """Store a message in a mailbox with the next UID: SMTP delivery and IMAP APPEND both call this."""
        return self.deliver_message_to_mailboxes([mailbox_id], raw, actor, max_size, flags, internaldate)[mailbox_id]

    def append_message(
        self,
        owner_id: int,
        path: str,
        raw: bytes | BinaryIO,
        actor: int | None = None,
        flags: Iterable[str] = (),
        internaldate: dt.datetime | None = None,
        max_size: int | None = None,
    ) -> tuple[Collection, Item]:
        """IMAP APPEND: :meth:`deliver_message` to the owner's mailbox at ``path``, and that mailbox.

        The mailbox is looked up in the delivery's write transaction (NotFound if none; PermissionDenied
        without ``read``, then without ``bind``, as :meth:`mailbox` and the delivery check), not in a read
        transaction of its own before it, and loaded once instead of twice: server CPU per APPEND went from
        ~2.7 to ~2.1 ms (bench/imap.py, SQLite).
        """
        if path.upper() == "INBOX":
            path = "INBOX"
        with self._preparing():
            job = self._prepare_delivery([], raw, actor, max_size, flags, internaldate)
            job.named = (owner_id, path)
        result = self._run_delivery(job)
        mailbox_id, item = next(iter(result.items()))
        return job.mailboxes[mailbox_id], item

    def list_messages(self, mailbox_id: int, actor: int | None = None) -> list[Item]:
        """Every message in a mailbox, in UID order (for tools and tests; IMAP uses the views below)."""
        with self.read() as s:
            coll = s.get(Collection, mailbox_id)
            if coll is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            self.access.authorize(s, actor, "read", coll)
            rows = s.execute(select(Item, MessageFlags.flags, MessageFlags.modseq)
                             .join(MessageFlags, MessageFlags.item_id == Item.id)
                             .where(Item.collection_id == mailbox_id).order_by(Item.uid)).all()
            # The flags and modseq a message has now are in its narrow row (migration 0006); the item's own
            # columns keep what it was delivered with.
            for item, flags, modseq in rows:
                set_committed_value(item, "flags", flags)
                set_committed_value(item, "modseq", modseq)
            return [item for item, _flags, _modseq in rows]

    # ------------------------------------------------------------------ multi-recipient delivery
    # (added for SMTP: one DATA reply covers every recipient, so delivery to them is all or nothing)
    def deliver_message_to_mailboxes(
        self,
        mailbox_ids: Iterable[int],
        raw: bytes | BinaryIO,
        actor: int | None = None,
        max_size: int | None = None,
        flags: Iterable[str] = (),
        internaldate: dt.datetime | None = None,
    ) -> dict[int, Item]:
        """Store one message in several mailboxes in ONE transaction: all get it, or none does.

        Per mailbox: the ``bind`` right, quota, the next UID, the change log; the body
        is stored once and indexed once (before the transaction). Returns the new item by
        mailbox id once it is committed. Concurrent calls in this process share a
        transaction (group commit, see :meth:`_commit_deliveries`).
        """
        with self._preparing():
            job = self._prepare_delivery(mailbox_ids, raw, actor, max_size, flags, internaldate)
        return self._run_delivery(job)

    @contextmanager
    def _preparing(self) -> Iterator[None]:
        """Count a delivery as being prepared while the block runs (see ``_GATHER_SECONDS``)."""
        group = self._delivery_group()
        with group.lock:
            group.preparing += 1
        try:
            yield
        finally:
            with group.lock:
                group.preparing -= 1
                group.arrived.notify_all()

    def _prepare_delivery(self, mailbox_ids: Iterable[int], raw: bytes | BinaryIO, actor: int | None,
                          max_size: int | None, flags: Iterable[str], internaldate: dt.datetime | None) -> _Delivery:
        """The body stored and indexed, the flags checked: a delivery ready for a write transaction."""
        ids = sorted(set(mailbox_ids))  # a fixed lock order: two deliveries never deadlock
        stored, sha, cache = self._store_and_index(raw, max_size)
        # The item's listing columns come from the same parse (not a second one with the email header registry).
        index = ItemIndex(subject=cache.subject, from_addr=cache.from_addr, to_addr=cache.to_addr,
                          message_id=cache.message_id, date=cache.date)
        wanted = normalize_flags(flags)
        check_flags_size(wanted)
        return _Delivery(ids, stored, sha, cache, index, wanted, actor, internaldate)

    def _run_delivery(self, job: _Delivery) -> dict[int, Item]:
        """Write ``job`` (group commit) and return its items once committed."""
        self.end_shared_read()  # what this thread reads after returning must see the delivery
        group = self._delivery_group()
        with group.lock:
            group.pending.append(job)
        with group.leader:
            if not job.done:  # nobody took it along yet: lead a group of what is waiting now
                deadline = time.monotonic() + _GATHER_SECONDS
                with group.lock:
                    while group.preparing and (left := deadline - time.monotonic()) > 0:
                        group.arrived.wait(left)
                # On SQLite the group is taken only once it is this process's turn to write (the gate is
                # re-entrant, so the transactions below pass it at once): what arrives while another server
                # process writes joins this group instead of waiting for a transaction of its own. Taken
                # before the gate, two processes wrote groups of ~1.9 messages (bench/smtp.py's load).
                with self._writer_turn():
                    with group.lock:
                        batch, group.pending = group.pending, []
                    self._commit_deliveries(batch)
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _store_and_index(self, raw: bytes | BinaryIO, max_size: int | None) -> tuple[Body, str, MessageIndex]:
        """The body stored (durably) and the message indexed, before any transaction.

        A message in memory that goes to a blob file is written and fsync'ed by a helper thread while
        this one indexes it: the fsyncs (the file's, and a new fan-out directory's) were a third of an
        APPEND's wait and the index most of its CPU, and neither needs the other. The delivery goes on
        only once the file is durable, as before; a failed write (too large, disk) fails the delivery."""
        if (isinstance(raw, (bytes, bytearray, memoryview)) and len(raw) > self.inline_limit
                and (max_size is None or len(raw) <= max_size)):
            data = bytes(raw)
            writing = _BLOB_WRITER.submit(self._store_body, data, max_size)
            cache = index_message_bytes(data[:MAX_PARSE])
            stored, sha, _ = writing.result()
            return stored, sha, cache
        stored, sha, data = self._store_body(raw, max_size)
        if data is None:
            with self.blobs.open(sha) as fh:
                data = fh.read(MAX_PARSE)
        return stored, sha, index_message_bytes(data)

    def _delivery_group(self) -> _DeliveryGroup:
        group = self.__dict__.get("_deliveries")
        if group is None:
            group = self.__dict__.setdefault("_deliveries", _DeliveryGroup())  # atomic: one per Store
        return group

    def _commit_deliveries(self, batch: list[_Delivery]) -> None:
        """Group commit: the deliveries waiting together go into ONE write transaction, and each caller
        returns only after that commit (a "250" after DATA still means the message is stored). Begin,
        collection lock, collection update and commit are paid once per group instead of once per
        message: with concurrent SMTP sessions that was a sixth of the CPU per message. If anything in
        the group fails (a full mailbox, a missing one, a failed commit), nothing of it is kept and each
        delivery is done again in a transaction of its own, so one caller's failure is never another's."""
        try:
            if len(batch) > 1:
                try:
                    with self.write() as s:
                        for job in batch:
                            # On PostgreSQL only the ids here: the mailboxes are locked below, in one order.
                            self._resolve_named(s, job, load=self._is_sqlite)
                        if not self._is_sqlite:
                            # PostgreSQL: lock every mailbox of the group in one order first (a group
                            # spans several callers' lock orders); SQLite's BEGIN IMMEDIATE locked all.
                            for mailbox_id in sorted({m for job in batch for m in job.mailbox_ids}):
                                self._locked_mailbox(s, mailbox_id)
                        # Quota: one reservation per owner for the whole group (if it does not fit,
                        # the group fails and each message is tried alone below, as quota decides).
                        for owner_id, size in self._group_sizes(s, batch).items():
                            self.quota.reserve(s, owner_id, "mail", size)
                        results = self._write_deliveries(s, batch, reserve=False)
                        _save_mailbox_counters(s)
                except Exception:  # noqa: BLE001 - redone one by one below, where each gets its own error
                    pass
                else:
                    for job, result in zip(batch, results, strict=True):
                        job.result = result
                    return
            for job in batch:
                try:
                    with self.write() as s:
                        self._resolve_named(s, job, load=True)
                        job.result = self._write_deliveries(s, [job])[0]
                        _save_mailbox_counters(s)
                except BaseException as exc:  # handed to the caller's thread
                    job.error = exc
        finally:
            for job in batch:
                if job.result is None and job.error is None:
                    job.error = StorageError("delivery interrupted")
                job.done = True

    def _resolve_named(self, s: Session, job: _Delivery, load: bool) -> None:
        """An APPEND's mailbox id, looked up again in every transaction the delivery is tried in (it may have
        been renamed or deleted since the last one). With ``load`` the mailbox is also locked and loaded by
        the same statement (as :meth:`_locked_mailbox` would by id: one statement less per APPEND); without,
        only its id is read, for the caller to lock in its own order."""
        if job.named is None:
            return
        owner_id, path = job.named
        params = {"owner": owner_id, "path": path}
        if load:
            locked: dict[int, Collection] = s.info.setdefault("locked_mailboxes", {})
            coll = s.scalar(_MAILBOX_BY_PATH if self._is_sqlite else _MAILBOX_BY_PATH_FOR_UPDATE, params)
            if coll is not None:
                # Already locked in this transaction (SQLite group: another message to it): the same object.
                coll = locked.setdefault(coll.id, coll)
            mailbox_id = None if coll is None else coll.id
        else:
            mailbox_id = s.connection().execute(_MAILBOX_ID_BY_PATH, params).scalar()
        if mailbox_id is None:
            raise NotFound(f"no mailbox {path!r}")
        job.mailbox_ids = [mailbox_id]

    def _locked_mailbox(self, s: Session, mailbox_id: int) -> Collection:
        """:meth:`_locked_collection`, once per transaction (a group writes several messages to one INBOX)."""
        locked: dict[int, Collection] = s.info.setdefault("locked_mailboxes", {})
        coll = locked.get(mailbox_id)
        if coll is None:
            coll = locked[mailbox_id] = self._locked_collection(s, mailbox_id)
        return coll

    def _group_sizes(self, s: Session, batch: list[_Delivery]) -> dict[int, int]:
        """Bytes the group adds per mailbox owner."""
        sizes: dict[int, int] = {}
        for job in batch:
            for mailbox_id in job.mailbox_ids:
                owner_id = self._locked_mailbox(s, mailbox_id).owner_id
                sizes[owner_id] = sizes.get(owner_id, 0) + job.stored.size
        return sizes

    def _write_deliveries(self, s: Session, jobs: list[_Delivery], reserve: bool = True) -> list[dict[int, Item]]:
        """The rows of ``jobs``' messages in every mailbox of each, in the caller's write transaction (each
        message's quota reserved here unless the caller reserved it); per job its new items by mailbox id.

        Checks, UIDs and modseqs go message by message as before; the rows then go in with one statement per
        table for all messages (blob references, change log, items with RETURNING, flag rows, header rows,
        text rows): a group of several messages no longer pays SQLAlchemy's per-statement cost once per row
        and message. The change events are one per mailbox, for its last message (as
        :meth:`_record_changes`): a listener (IMAP IDLE) reads the change log, not the event's item."""
        results: list[dict[int, Item]] = []
        new: list[tuple[Item, _Delivery]] = []
        private_flags: list[MailUserFlags] = []
        touched: dict[int, Collection] = {}
        changes: list[dict[str, object]] = []
        now = utcnow()
        for job in jobs:
            items: dict[int, Item] = {}
            system, keywords = split_flags(job.flags)
            columns = {**body_columns(job.stored, job.sha, "message/rfc822", job.index), **_index_columns(job.cache)}
            for mailbox_id in job.mailbox_ids:
                coll = self._locked_mailbox(s, mailbox_id)
                if coll.kind != "mailbox":
                    raise NotFound("not a mailbox")
                if job.named is not None:
                    self.access.authorize(s, job.actor, "read", coll)  # what looking it up by name asks (mailbox())
                    job.mailboxes[mailbox_id] = coll
                self.access.authorize(s, job.actor, "bind", coll)
                if reserve:
                    self.quota.reserve(s, coll.owner_id, "mail", job.stored.size)
                uid = coll.uidnext
                coll.uidnext = uid + 1
                coll.modseq += 1
                touched[coll.id] = coll
                private = is_private_view(coll, job.actor)
                # The row's values go into a bare Item's __dict__ (committed by insert_detached_many right after
                # the INSERT), not through ~40 instrumented attribute sets: ~0.1 ms per message.
                item = Item()
                item.__dict__.update(columns, collection_id=coll.id, name=str(uid), uid=uid, created_at=now,
                                     internaldate=job.internaldate or now, modseq=coll.modseq,
                                     flags=" ".join(keywords if private else job.flags))
                changes.append({"collection_id": coll.id, "modseq": coll.modseq, "item_name": item.name,
                                "item_uid": uid, "kind": "created", "at": now})
                new.append((item, job))
                if private and system:
                    private_flags.append(MailUserFlags(item_id=None, principal_id=job.actor, collection_id=coll.id,
                                                       flags=" ".join(system), modseq=coll.modseq))
                items[mailbox_id] = item
            results.append(items)
        conn = s.connection()
        self._reference_blobs(s, [job.stored for item, job in new])
        conn.execute(_INSERT_CHANGE, changes)
        for coll in touched.values():
            coll.updated_at = now
            self._announce_change(s, coll, "created", coll.modseq, str(coll.uidnext - 1), coll.uidnext - 1)
        insert_detached_many(s, [item for item, _job in new])
        conn.execute(_INSERT_FLAGS, [{"item_id": item.id, "collection_id": item.collection_id, "uid": item.uid,
                                      "flags": item.flags, "modseq": item.modseq} for item, _job in new])
        headers = [{"item_id": item.id, "name": n, "value": v} for item, job in new for n, v in job.cache.headers]
        if headers:
            conn.execute(_INSERT_HEADERS, headers)
        conn.execute(_INSERT_TEXT, [{"item_id": item.id, "body": job.cache.text} for item, job in new])
        if private_flags:
            by_mailbox_and_modseq = {(item.collection_id, item.modseq): item.id for item, _job in new}
            for row in private_flags:
                row.item_id = by_mailbox_and_modseq[(row.collection_id, row.modseq)]
                s.add(row)
        self._fault("before_commit")
        return results
