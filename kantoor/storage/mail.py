"""Messages: delivery, the one call SMTP and IMAP APPEND share.

Delivery computes the message index once (:mod:`kantoor.storage.message_index`:
ENVELOPE/BODYSTRUCTURE wire forms) and stores it with the message; the SEARCH rows
(decoded headers and text) follow from the search backlog
(:mod:`kantoor.storage.search_backlog`). COPY and MOVE reuse both
(:mod:`kantoor.storage.imap_state`). What IMAP
reads is in :mod:`kantoor.storage.mail_views`, shared mailboxes in
:mod:`kantoor.storage.shared_mail`; both are part of :class:`MailMixin`.

The body is stored and indexed before the write transaction; deliveries that wait
for the transaction at the same time (eight SMTP sessions, an IMAP APPEND) are
written together in one (group commit), each caller returning after that commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from kantoor.storage import raw_statements as raw
from kantoor.storage.errors import NotFound, StorageError
from kantoor.storage.group_commit import GroupCommit, GroupJob
from kantoor.storage.indexing import ItemIndex
from kantoor.storage.mail_flags import check_flags_size, is_private_view, split_flags
from kantoor.storage.mail_views import MailViewsMixin, _index_columns
from kantoor.storage.message_index import MAX_PARSE, MessageIndex, index_message_bytes
from kantoor.storage.models import (
    Change,
    Collection,
    Item,
    MailUserFlags,
    MessageFlags,
    SearchBacklog,
    utcnow,
)
from kantoor.storage.names import normalize_flags
from kantoor.storage.shared_mail import SharedMailMixin
from kantoor.storage.transactions import Body, body_columns, insert_columns, row_values


@dataclass
class _Delivery(GroupJob):
    """One deliver_message_to_mailboxes call, prepared (body stored, index computed), waiting to be written."""

    mailbox_ids: list[int]
    stored: Body
    sha: str
    cache: MessageIndex
    index: ItemIndex
    flags: list[str]
    actor: int | None
    internaldate: dt.datetime | None
    # IMAP APPEND names its mailbox (owner, path): it is looked up in each write transaction the delivery
    # is tried in (see MailMixin.append_message), which then fills ``mailbox_ids`` and ``mailboxes``.
    named: tuple[int, str] | None = None
    mailboxes: dict[int, Collection] = field(default_factory=dict)
    # Counted against the owner's mail capacity but never refused for it (see deliver_message).
    over_capacity: bool = False


# How long a group's leader waits for deliveries still being prepared (body stored, message indexed) in this
# process (GroupCommit.preparing), and for as many as the last group had (expect_recent), before it writes: a
# transaction costs ~1 ms of CPU alone and ~0.5 ms per message in a group of four (SQLite; the page writes and
# the statements are shared), and with several SMTP sessions per process the groups were ~1.7 messages; waiting
# for preparations alone still left a third of the groups with one message (8 MX sessions, bench/smtp.py), and
# expecting the last group's size took ~8 % off the CPU per message. Bounded, and no wait at all when nobody
# else is preparing and the last group was one message (one IMAP session).
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


_COLLECTIONS = Collection.__table__


@dataclass
class _MailStatements:
    """A delivery's statements, compiled for one dialect (see :mod:`kantoor.storage.raw_statements`)."""

    mailbox_id_by_path: raw.RawStatement
    claim_by_path: raw.RawStatement
    claim_by_id: raw.RawStatement
    insert_change: raw.RawStatement
    insert_item: raw.RawStatement
    insert_flags: raw.RawStatement
    insert_backlog: raw.RawStatement


def _claim(where: Any) -> Any:
    """Take ``n`` UIDs and modseqs from a mailbox's counters and return its row (locking it on PostgreSQL,
    as SELECT … FOR UPDATE did: the UPDATE holds the row until commit)."""
    c = _COLLECTIONS.c
    return (update(_COLLECTIONS).where(where)
            .values(uidnext=c.uidnext + bindparam("n"), modseq=c.modseq + bindparam("n"), updated_at=bindparam("now"))
            .returning(*_COLLECTIONS.columns))


@functools.cache
def _statements(dialect: Dialect) -> _MailStatements:
    c = _COLLECTIONS.c
    by_path = and_(c.owner_id == bindparam("owner"), c.kind == "mailbox", c.path == bindparam("path"))
    items = Item.__table__
    return _MailStatements(
        mailbox_id_by_path=raw.RawStatement(select(c.id).where(by_path), dialect),
        claim_by_path=raw.RawStatement(_claim(by_path), dialect),
        claim_by_id=raw.RawStatement(_claim(c.id == bindparam("mailbox")), dialect),
        insert_change=raw.RawStatement(insert(Change.__table__), dialect,
                                       ["collection_id", "modseq", "item_name", "item_uid", "kind", "at"], many=True),
        insert_item=raw.RawStatement(insert(items).returning(items.c.id), dialect,
                                     [key for key, _call, _default in insert_columns(items)]),
        insert_flags=raw.RawStatement(insert(MessageFlags.__table__), dialect,
                                      ["item_id", "collection_id", "uid", "flags", "modseq"], many=True),
        insert_backlog=raw.RawStatement(insert(SearchBacklog.__table__), dialect, ["item_id"], many=True),
    )


@dataclass
class _Claimed:
    """A mailbox locked in this transaction with ``left`` UIDs and modseqs taken for its new messages.

    ``mailbox`` is detached and holds the counters as committed (``uidnext`` past the last UID taken)."""

    mailbox: Collection
    uid: int  # the next UID to hand out
    modseq: int  # the last modseq handed out
    left: int

    @classmethod
    def taken(cls, row: dict[str, Any], n: int) -> _Claimed:
        mailbox = Collection()
        mailbox.__dict__.update(row)  # every column, as a load would give them (not instrumented sets)
        make_transient_to_detached(mailbox)
        return cls(mailbox, row["uidnext"] - n, row["modseq"] - n, n)

    def next(self) -> tuple[int, int]:
        """(UID, modseq) of the next message to this mailbox."""
        if self.left <= 0:
            raise StorageError("more messages than UIDs taken")
        uid = self.uid
        self.uid += 1
        self.modseq += 1
        self.left -= 1
        return uid, self.modseq


def _group_sizes(batch: list[_Delivery], mailboxes: dict[int, _Claimed]) -> dict[int, int]:
    """Bytes the group adds per mailbox owner (the jobs that may pass the capacity apart)."""
    sizes: dict[int, int] = {}
    for job in batch:
        if job.over_capacity:
            continue  # reserved on its own, never refused
        for mailbox_id in job.mailbox_ids:
            owner_id = mailboxes[mailbox_id].mailbox.owner_id
            sizes[owner_id] = sizes.get(owner_id, 0) + job.stored.size
    return sizes


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
        *,
        over_capacity: bool = False,
    ) -> Item:
        """Store a message in a mailbox with the next UID: SMTP delivery and IMAP APPEND both call this.

        ``over_capacity``: the message counts against the owner's mail capacity but is stored even when that
        is full (the server's own short notices, which must reach a full mailbox: "your mailbox is full" would
        otherwise wait in the queue until it expired)."""
        return self.deliver_message_to_mailboxes([mailbox_id], raw, actor, max_size, flags, internaldate,
                                                 over_capacity=over_capacity)[mailbox_id]

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
        *,
        over_capacity: bool = False,
    ) -> dict[int, Item]:
        """Store one message in several mailboxes in ONE transaction: all get it, or none does.

        Per mailbox: the ``bind`` right, quota, the next UID, the change log; the body
        is stored once and indexed once (before the transaction). Returns the new item by
        mailbox id once it is committed. Concurrent calls in this process share a
        transaction (group commit, see :meth:`_delivery_group`).
        """
        with self._preparing():
            job = self._prepare_delivery(mailbox_ids, raw, actor, max_size, flags, internaldate)
        job.over_capacity = over_capacity
        return self._run_delivery(job)

    def _preparing(self) -> AbstractContextManager[None]:
        """Count a delivery as being prepared while the block runs (see ``_GATHER_SECONDS``)."""
        return self._delivery_group().preparing()

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
        items: dict[int, Item] = self._delivery_group().run(job)
        self.search_backlog.noted([item.id for item in items.values()])
        return items

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
            cache = index_message_bytes(data[:MAX_PARSE], search=False)
            stored, sha, _ = writing.result()
            return stored, sha, cache
        stored, sha, data = self._store_body(raw, max_size)
        if data is None:
            with self.blobs.open(sha) as fh:
                data = fh.read(MAX_PARSE)
        return stored, sha, index_message_bytes(data, search=False)

    def _delivery_group(self) -> GroupCommit[_Delivery]:
        group = self.__dict__.get("_deliveries")
        if group is None:
            # Group commit (kantoor.storage.group_commit): a "250" after DATA still means the message is stored.
            # Begin, collection lock, collection update and commit are paid once per group instead of once per
            # message: with concurrent SMTP sessions that was a sixth of the CPU per message.
            group = self.__dict__.setdefault("_deliveries", GroupCommit(  # atomic: one per Store
                self._writer_turn, self._write_delivery_group, self._write_delivery,
                gather_seconds=_GATHER_SECONDS, expect_recent=True, interrupted="delivery interrupted"))
        return group

    def _write_delivery_group(self, batch: list[_Delivery]) -> list[dict[int, Item]]:
        """Several deliveries in one write transaction (any failure: the group commit redoes them alone)."""
        with self.write() as s:
            now = utcnow()
            for job in batch:
                self._resolve_named(s, job)
            mailboxes = self._claim_mailboxes(s, batch, now)
            # Quota: one reservation per owner for the whole group (if it does not fit,
            # the group fails and each message is tried alone, as quota decides).
            for owner_id, size in _group_sizes(batch, mailboxes).items():
                self.quota.reserve(s, owner_id, "mail", size)
            for job in batch:
                if job.over_capacity:
                    for mailbox_id in job.mailbox_ids:
                        self.quota.reserve(s, mailboxes[mailbox_id].mailbox.owner_id, "mail", job.stored.size,
                                           over_capacity=True)
            return self._write_deliveries(s, batch, mailboxes, now, reserve=False)

    def _write_delivery(self, job: _Delivery) -> dict[int, Item]:
        """One delivery in a write transaction of its own."""
        with self.write() as s:
            now = utcnow()
            if job.named is not None:
                # One statement finds the APPEND's mailbox, locks it and takes its UID and modseq.
                claimed = self._claim_named(s, job, now)
                mailboxes = {claimed.mailbox.id: claimed}
            else:
                mailboxes = self._claim_mailboxes(s, [job], now)
            return self._write_deliveries(s, [job], mailboxes, now)[0]

    def _resolve_named(self, s: Session, job: _Delivery) -> None:
        """An APPEND's mailbox id, looked up again in every transaction the delivery is tried in (it may have
        been renamed or deleted since the last one); the caller then locks it in its own order."""
        if job.named is None:
            return
        owner_id, path = job.named
        rows = raw.returning(s, _statements(self.engine.dialect).mailbox_id_by_path, {"owner": owner_id, "path": path})
        if not rows:
            raise NotFound(f"no mailbox {path!r}")
        job.mailbox_ids = [rows[0]["id"]]

    def _claim_named(self, s: Session, job: _Delivery, now: dt.datetime) -> _Claimed:
        """A single APPEND's mailbox by (owner, path), locked, with one UID and modseq taken from its counters
        by one ``UPDATE … RETURNING`` (the ORM load of the mailbox and the UPDATE of its counters after were a
        SELECT, an UPDATE and ~10 % of an APPEND's CPU). Authorisation follows; a refusal rolls it back."""
        assert job.named is not None
        owner_id, path = job.named
        rows = raw.returning(s, _statements(self.engine.dialect).claim_by_path,
                             {"owner": owner_id, "path": path, "n": 1, "now": now})
        if not rows:
            raise NotFound(f"no mailbox {path!r}")
        claimed = _Claimed.taken(rows[0], 1)
        job.mailbox_ids = [claimed.mailbox.id]
        return claimed

    def _claim_mailboxes(self, s: Session, jobs: list[_Delivery], now: dt.datetime) -> dict[int, _Claimed]:
        """Every mailbox ``jobs`` deliver to, locked in id order (two groups never deadlock on PostgreSQL;
        SQLite's BEGIN IMMEDIATE already locked everything), each with as many UIDs and modseqs taken from its
        counters as messages go to it, by one ``UPDATE … RETURNING`` per mailbox."""
        counts: dict[int, int] = {}
        for job in jobs:
            for mailbox_id in job.mailbox_ids:
                counts[mailbox_id] = counts.get(mailbox_id, 0) + 1
        claim = _statements(self.engine.dialect).claim_by_id
        mailboxes: dict[int, _Claimed] = {}
        for mailbox_id in sorted(counts):
            rows = raw.returning(s, claim, {"mailbox": mailbox_id, "n": counts[mailbox_id], "now": now})
            if not rows:
                raise NotFound(f"no collection {mailbox_id}")
            mailboxes[mailbox_id] = _Claimed.taken(rows[0], counts[mailbox_id])
        return mailboxes

    def _write_deliveries(self, s: Session, jobs: list[_Delivery], mailboxes: dict[int, _Claimed], now: dt.datetime,
                          reserve: bool = True) -> list[dict[int, Item]]:
        """The rows of ``jobs``' messages in every mailbox of each (claimed by the caller, see
        :meth:`_claim_mailboxes`), in the caller's write transaction (each message's quota reserved here
        unless the caller reserved it); per job its new items by mailbox id.

        Checks, UIDs and modseqs go message by message; the rows then go in with raw DBAPI statements
        (:mod:`kantoor.storage.raw_statements`): one per item (with RETURNING id), one executemany per table
        for the rest (change log, flag rows, header rows, text rows). The change events are one per mailbox,
        for its last message (as :meth:`_record_changes`): a listener (IMAP IDLE) reads the change log, not
        the event's item."""
        statements = _statements(self.engine.dialect)
        results: list[dict[int, Item]] = []
        new: list[tuple[Item, _Delivery]] = []
        private_flags: list[MailUserFlags] = []
        changes: list[dict[str, object]] = []
        for job in jobs:
            items: dict[int, Item] = {}
            system, keywords = split_flags(job.flags)
            columns = {**body_columns(job.stored, job.sha, "message/rfc822", job.index), **_index_columns(job.cache)}
            for mailbox_id in job.mailbox_ids:
                claimed = mailboxes[mailbox_id]
                coll = claimed.mailbox
                if coll.kind != "mailbox":
                    raise NotFound("not a mailbox")
                if job.named is not None:
                    self.access.authorize(s, job.actor, "read", coll)  # what looking it up by name asks (mailbox())
                    job.mailboxes[mailbox_id] = coll
                self.access.authorize(s, job.actor, "bind", coll)
                if reserve:
                    self.quota.reserve(s, coll.owner_id, "mail", job.stored.size, over_capacity=job.over_capacity)
                uid, modseq = claimed.next()
                private = is_private_view(coll, job.actor)
                # The row's values go into a bare Item's __dict__ (committed by make_transient_to_detached right
                # after the INSERT), not through ~40 instrumented attribute sets: ~0.1 ms per message.
                item = Item()
                item.__dict__.update(columns, collection_id=coll.id, name=str(uid), uid=uid, created_at=now,
                                     internaldate=job.internaldate or now, modseq=modseq,
                                     flags=" ".join(keywords if private else job.flags))
                changes.append({"collection_id": coll.id, "modseq": modseq, "item_name": item.name,
                                "item_uid": uid, "kind": "created", "at": now})
                new.append((item, job))
                if private and system:
                    private_flags.append(MailUserFlags(item_id=None, principal_id=job.actor, collection_id=coll.id,
                                                       flags=" ".join(system), modseq=modseq))
                items[mailbox_id] = item
            results.append(items)
        self._reference_blobs(s, [job.stored for item, job in new])
        raw.execute_many(s, statements.insert_change, changes)
        for claimed in mailboxes.values():
            coll = claimed.mailbox
            self._announce_change(s, coll, "created", coll.modseq, str(coll.uidnext - 1), coll.uidnext - 1)
        for item, _job in new:
            item.id = raw.execute(s, statements.insert_item, row_values(item)).fetchall()[0][0]
            make_transient_to_detached(item)
        raw.execute_many(s, statements.insert_flags, [
            {"item_id": item.id, "collection_id": item.collection_id, "uid": item.uid, "flags": item.flags,
             "modseq": item.modseq} for item, _job in new])
        # The SEARCH rows are the indexer's (kantoor.storage.search_backlog): a third of a delivery's pages.
        raw.execute_many(s, statements.insert_backlog, [{"item_id": item.id} for item, _job in new])
        if private_flags:
            by_mailbox_and_modseq = {(item.collection_id, item.modseq): item.id for item, _job in new}
            for row in private_flags:
                row.item_id = by_mailbox_and_modseq[(row.collection_id, row.modseq)]
                s.add(row)
        self._fault("before_commit")
        return results
