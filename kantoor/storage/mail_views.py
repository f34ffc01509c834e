"""The IMAP views of a mailbox: what a session asks, with a bounded number of queries whatever the mailbox size.

Flags, modseqs and UIDs come from the narrow ``message_flags`` rows (migration
0006); ``items`` is joined only for what a view needs of the message itself.
The UID list at SELECT (one indexed column), counts in SQL, one query for the
rows a FETCH names (flags and modseq in the reader's own view, see
:mod:`kantoor.storage.mail_flags`), one for a SEARCH
(:mod:`kantoor.storage.mail_search`), and the change log for what changed since a
modseq. \\Recent is a per-mailbox mark raised atomically (RFC 3501 2.3.2).
Messages stored before the message index existed (NULL columns, migration 0004)
are indexed the first time they are fetched or searched, and saved.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Result, Row, Select, and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from kantoor.storage.errors import NotFound
from kantoor.storage.mail_flags import is_private_view, modseq_expr, user_flags_join, view_flags
from kantoor.storage.mail_search import Criterion, Flag, compile_criterion, uses_items
from kantoor.storage.message_index import MessageIndex, index_message_bytes
from kantoor.storage.models import Change, Collection, Item, MailUserFlags, MessageFlags
from kantoor.storage.search_backlog import SearchBacklogMixin, taken_from_search_backlog, write_search_rows

# Above this many UIDs a FETCH reads the UID range and drops what was not asked for (one query).
_IN_LIST_LIMIT = 500
# Old messages indexed per transaction on first use.
_INDEX_BATCH = 200


@dataclass(slots=True)
class MessageRow:
    """What FETCH needs of one message, in one reader's view (flags and modseq per user in shared mailboxes)."""

    id: int
    uid: int
    flags: list[str]
    modseq: int
    size: int
    internaldate: dt.datetime | None  # None unless asked for (parsing it costs on SQLite)
    blob_sha256: str | None
    envelope: str | None = None
    bodystructure: str | None = None
    body: str | None = None
    inline_body: bytes | None = None  # only when asked for (``message_rows(bodies=True)``)


@dataclass
class MailboxSnapshot:
    """A mailbox as SELECT sees it: the UID list (sequence order) and what the untagged replies say."""

    collection: Collection
    uids: list[int]
    first_unseen_uid: int | None
    unseen: int
    recent_from: int  # messages with a UID in (recent_from, recent_to] are \Recent for this session
    recent_to: int
    rights: frozenset[str] = frozenset()


@dataclass
class MailboxDelta:
    """What changed in a mailbox after a modseq, in one reader's view."""

    collection: Collection
    expunged: list[int] = field(default_factory=list)  # UIDs
    new_uids: list[int] = field(default_factory=list)
    changed: list[MessageRow] = field(default_factory=list)  # known messages whose flags/modseq moved
    recent_from: int = 0
    recent_to: int = 0


def _fetched(result: Result[Any]) -> Iterator[Row[Any]]:
    """The rows of a large result, fetched a few hundred at a time. Row by row, each fetch cost about a
    microsecond more per row (most of a SELECT's own cost); all at once (``.all()``), a FETCH 1:* of 10,000
    messages kept 20,000 more objects alive, which made CPython's full garbage collections (tens of ms in a
    server's heap) three times as frequent."""
    for part in result.partitions(_FETCH_ROWS):
        yield from part


_FETCH_ROWS = 256


# The IMAP message cache columns by the MessageRow attribute that carries them.
_CACHE_COLUMNS = {"envelope": Item.imap_envelope, "bodystructure": Item.imap_bodystructure, "body": Item.imap_body}


@functools.cache
def _rows_statement(private: bool, cache: tuple[str, ...], dates: bool, bodies: bool, in_list: bool) -> Select[Any]:
    """The query of :meth:`MailViewsMixin.message_rows` for one combination of its options, built once: building
    it (and coercing a hundred UIDs into literals) cost half as much as running it for a client's UID FETCH.
    Parameters: ``mailbox``, ``actor`` (private views), and ``uids`` (expanding IN) or ``low``/``high``."""
    columns: list[Any] = [MessageFlags.item_id, MessageFlags.uid, MessageFlags.flags, MessageFlags.modseq, Item.size,
                          Item.blob_sha256]
    if private:
        columns += [MailUserFlags.flags, MailUserFlags.modseq]
    columns += [_CACHE_COLUMNS[name] for name in cache]
    if dates:
        columns += [Item.internaldate, Item.created_at]
    if bodies:
        # The inline bodies come with the rows (``bodies=True``): a second query and read check spared.
        columns.append(Item.inline_body)
    query = (select(*columns).select_from(MessageFlags).join(Item, Item.id == MessageFlags.item_id)
             .where(MessageFlags.collection_id == bindparam("mailbox")))
    if private:
        query = query.outerjoin(MailUserFlags, and_(MailUserFlags.item_id == MessageFlags.item_id,
                                                    MailUserFlags.principal_id == bindparam("actor")))
    if in_list:
        query = query.where(MessageFlags.uid.in_(bindparam("uids", expanding=True)))
    else:
        query = query.where(MessageFlags.uid.between(bindparam("low"), bindparam("high")))
    return query.order_by(MessageFlags.uid)


def _index_columns(index: MessageIndex) -> dict[str, object]:
    return {"imap_envelope": index.envelope, "imap_bodystructure": index.bodystructure, "imap_body": index.body,
            "sent_date": index.sent_date}


class MailViewsMixin(SearchBacklogMixin):
    # ------------------------------------------------------------------ lazy index for old messages
    def _ensure_indexed(self, item_ids: Sequence[int]) -> None:
        """Index messages stored before the index existed (NULL envelope), once, and save it.

        In batches: one read of the rows, and one write transaction, per
        :data:`_INDEX_BATCH` messages (a mailbox of 50,000 old messages is indexed in
        minutes on its first SEARCH, not one transaction per message). Bytes are
        read and parsed outside the write transaction, so other writers wait only
        for the inserts.
        """
        for start in range(0, len(item_ids), _INDEX_BATCH):
            batch = list(item_ids[start:start + _INDEX_BATCH])
            with self.read() as s:
                rows = list(s.execute(select(Item.id, Item.inline_body, Item.blob_sha256).where(Item.id.in_(batch))))
            caches = {item_id: index_message_bytes(self.indexed_bytes(inline, sha)) for item_id, inline, sha in rows}
            with self.write() as s:
                done = {}
                for item_id, cache in caches.items():
                    if s.execute(update(Item).where(Item.id == item_id, Item.imap_envelope.is_(None))
                                 .values(**_index_columns(cache))).rowcount:  # another session may have meanwhile
                        done[item_id] = cache
                taken_from_search_backlog(s, list(done))
                write_search_rows(s, done)

    def _unindexed(self, s: Session, mailbox_id: int, uids: Iterable[int] | None = None) -> list[int]:
        query = select(Item.id).where(Item.collection_id == mailbox_id, Item.imap_envelope.is_(None))
        if uids is not None:
            query = query.where(Item.uid.in_(list(uids)))
        return list(s.scalars(query))

    # ------------------------------------------------------------------ IMAP views
    def _readable_mailbox(self, s: Session, mailbox_id: int, actor: int | None) -> Collection:
        coll = s.get(Collection, mailbox_id)
        if coll is None or coll.kind != "mailbox":
            raise NotFound(f"no mailbox {mailbox_id}")
        self.access.authorize(s, actor, "read", coll)
        return coll

    def _view_query(self, coll: Collection, actor: int | None, *columns, items: bool = False):  # type: ignore[no-untyped-def]
        """SELECT ``columns`` FROM message_flags [JOIN items] [LEFT JOIN the reader's own flags] of one mailbox."""
        query = select(*columns).select_from(MessageFlags).where(MessageFlags.collection_id == coll.id)
        if items:
            query = query.join(Item, Item.id == MessageFlags.item_id)
        if is_private_view(coll, actor):
            query = query.outerjoin(MailUserFlags, user_flags_join(actor))
        return query

    def _unseen(self, s: Session, coll: Collection, actor: int | None) -> tuple[int, int | None]:
        unseen = compile_criterion(Flag("\\Seen", False), is_private_view(coll, actor))
        row = s.execute(self._view_query(coll, actor, func.count(), func.min(MessageFlags.uid)).where(unseen)).one()
        return int(row[0] or 0), (int(row[1]) if row[1] is not None else None)

    @staticmethod
    def _uids_and_unseen(s: Session, mailbox_id: int) -> tuple[list[int], int, int | None]:
        """The UID list, the unseen count and the first unseen UID of a mailbox in its owner's view, in one pass
        over the narrow flag rows: the test for \\Seen runs once per distinct flag string (a mailbox has few),
        not as a SQL string function per message."""
        uids: list[int] = []
        append = uids.append
        seen_in: dict[str, bool] = {}
        unseen, first = 0, None
        for uid, flags in _fetched(s.connection().execute(
                select(MessageFlags.uid, MessageFlags.flags).where(MessageFlags.collection_id == mailbox_id)
                .order_by(MessageFlags.uid))):
            append(uid)
            seen = seen_in.get(flags)
            if seen is None:
                # (NULL flags, never written, count as neither, as the SQL test of ``_unseen`` would have it.)
                seen = seen_in[flags] = flags is None or "\\seen" in flags.lower().split()
            if not seen:
                unseen += 1
                if first is None:
                    first = uid
        return uids, unseen, first

    def open_mailbox(self, mailbox_id: int, actor: int | None = None, claim_recent: bool = False) -> MailboxSnapshot:
        """SELECT/EXAMINE: the UID list, unseen count and first unseen UID, and \\Recent (RFC 3501 2.3.2).

        With ``claim_recent`` (SELECT, not EXAMINE) this session becomes the one that
        sees the messages that arrived since the last SELECT as \\Recent: the
        mailbox's ``recent_uid`` is raised to the highest UID in one locked
        transaction, so of two sessions (or two server processes) only one gets them.
        The reads come first (one session inside the caller's ``request_scope``), and the
        write only when there is something to claim: up to the highest UID read, so a
        message arriving meanwhile is left for the session's next refresh to claim.
        """
        with self.read() as s:
            coll = self._readable_mailbox(s, mailbox_id, actor)
            if is_private_view(coll, actor):  # \Seen is the reader's own: counted in SQL over the joined rows
                uids = [u for (u,) in _fetched(s.connection().execute(
                    select(MessageFlags.uid).where(MessageFlags.collection_id == coll.id).order_by(MessageFlags.uid)))]
                unseen, first = self._unseen(s, coll, actor)
            else:
                uids, unseen, first = self._uids_and_unseen(s, coll.id)
            rights = self.rights_held(mailbox_id, actor=actor)
        # EXAMINE shows what is recent without claiming it (RFC 3501 6.3.2: it MUST NOT clear \Recent).
        low, high = int(coll.recent_uid or 0), uids[-1] if uids else 0
        if claim_recent:
            low, high = self._claim_recent(mailbox_id, actor, high) if high > low else (low, low)
            coll.recent_uid = max(int(coll.recent_uid or 0), high)  # as the claim left it (a detached copy)
        return MailboxSnapshot(coll, uids, first, unseen, low, high, rights)

    def _claim_recent(self, mailbox_id: int, actor: int | None, up_to: int | None) -> tuple[int, int]:
        """Raise the mailbox's \\Recent mark to ``up_to`` (default: the highest UID); the UIDs claimed, as a range."""
        with self.write() as s:
            coll = self._locked_collection(s, mailbox_id)
            self.access.authorize(s, actor, "read", coll)
            highest = int(coll.uidnext) - 1 if up_to is None else min(int(up_to), int(coll.uidnext) - 1)
            low = int(coll.recent_uid or 0)
            if highest <= low:
                return low, low
            coll.recent_uid = highest
            return low, highest

    def mailbox_status(self, mailbox_id: int, actor: int | None = None) -> dict[str, int]:
        """STATUS (RFC 3501 6.3.10) from aggregate queries: nothing per message leaves the database."""
        with self.read() as s:
            coll = self._readable_mailbox(s, mailbox_id, actor)
            count, recent = s.execute(select(func.count(), func.count().filter(MessageFlags.uid > coll.recent_uid))
                                      .where(MessageFlags.collection_id == coll.id)).one()
            unseen, _ = self._unseen(s, coll, actor)
            return {"MESSAGES": int(count), "RECENT": int(recent), "UIDNEXT": int(coll.uidnext),
                    "UIDVALIDITY": int(coll.uidvalidity), "UNSEEN": unseen,
                    "HIGHESTMODSEQ": max(1, int(coll.modseq))}

    def message_rows(self, mailbox_id: int, uids: Sequence[int], actor: int | None = None,
                     cached: bool | Iterable[str] = False, dates: bool = True,
                     bodies: bool = False) -> list[MessageRow]:
        """The rows of the messages ``uids`` (sorted), in one query; with ``cached`` also ENVELOPE/BODYSTRUCTURE/BODY
        (True: all three; or the names of those wanted, of "envelope", "bodystructure", "body": the others stay
        None), without ``dates`` no INTERNALDATE, with ``bodies`` the bodies stored inline (:meth:`row_bodies`
        gives every body then). Large sets read the UID range and drop what was not asked for."""
        if not uids:
            return []
        # Only the cache columns asked for: a BODYSTRUCTURE is often longer than the rest of the row, and reading
        # it for a FETCH (FLAGS ENVELOPE) doubled the bytes SQLite copied out per message.
        wanted_cache = tuple(_CACHE_COLUMNS) if cached is True else tuple(
            name for name in _CACHE_COLUMNS if name in cached) if cached else ()
        with self.read() as s:
            coll = self._readable_mailbox(s, mailbox_id, actor)
            if wanted_cache and (missing := self._unindexed(s, coll.id,
                                                             uids if len(uids) <= _IN_LIST_LIMIT else None)):
                s.close()
                self._ensure_indexed(missing)
            private = is_private_view(coll, actor)
            query = _rows_statement(private, wanted_cache, dates, bodies, len(uids) <= _IN_LIST_LIMIT)
            params: dict[str, object] = {"mailbox": coll.id, "actor": actor or 0}
            wanted = None
            if len(uids) <= _IN_LIST_LIMIT:
                params["uids"] = list(uids)
            else:
                params["low"], params["high"] = uids[0], uids[-1]
                wanted = set(uids)
            rows = []
            # A mailbox has few distinct flag strings: each is split once, and its list shared by the rows
            # (readers never change a row's list; they build a new one, e.g. to add \Recent).
            views: dict[tuple[str, str | None], list[str]] = {}
            result = s.connection().execute(query, params)
            if not (private or dates or bodies) and wanted_cache in ((), ("envelope",)):
                # The usual FETCH (FLAGS, UID, RFC822.SIZE, ENVELOPE) in the owner's view: the same rows, built
                # without the per-column steps below (a FETCH 1:* spends as much on them as in SQLite).
                return self._plain_rows(result, wanted, bool(wanted_cache))
            for r in _fetched(result):
                uid = r[1]
                if wanted is not None and uid not in wanted:
                    continue
                at = 6
                user_flags = user_modseq = None
                if private:
                    user_flags, user_modseq = r[6], r[7]
                    at = 8
                flags = views.get((r[2], user_flags))
                if flags is None:
                    flags = views[(r[2], user_flags)] = view_flags(r[2], user_flags, private)
                row = MessageRow(r[0], uid, flags,
                                 r[3] if user_modseq is None or user_modseq < r[3] else user_modseq, r[4], None, r[5])
                for name in wanted_cache:
                    setattr(row, name, r[at])
                    at += 1
                if dates:
                    row.internaldate = r[at] or r[at + 1]
                    at += 2
                if bodies:
                    row.inline_body = r[at]
                rows.append(row)
            return rows

    @staticmethod
    def _plain_rows(result: Result[Any], wanted: set[int] | None, envelope: bool) -> list[MessageRow]:
        """:meth:`message_rows` of the owner's view without dates or bodies, at most the ENVELOPE column."""
        rows: list[MessageRow] = []
        append = rows.append
        views: dict[str, list[str]] = {}
        for r in _fetched(result):
            uid = r[1]
            if wanted is not None and uid not in wanted:
                continue
            flags = views.get(r[2])
            if flags is None:
                flags = views[r[2]] = view_flags(r[2], None, False)
            append(MessageRow(r[0], uid, flags, r[3], r[4], None, r[5], r[6]) if envelope
                   else MessageRow(r[0], uid, flags, r[3], r[4], None, r[5]))
        return rows

    def message_bytes(self, mailbox_id: int, item_id: int, actor: int | None = None, limit: int | None = None) -> bytes:
        """A message's raw bytes (its first ``limit`` bytes when given), after a ``read`` check."""
        with self.read() as s:
            coll = self._readable_mailbox(s, mailbox_id, actor)
            row = s.execute(select(Item.inline_body, Item.blob_sha256)
                            .where(Item.id == item_id, Item.collection_id == coll.id)).one_or_none()
        if row is None:
            raise NotFound(f"no message {item_id}")
        inline, sha = row
        if inline is not None:
            return inline if limit is None else inline[:limit]
        if sha is None:
            return b""
        if limit is None:
            return self.blobs.read(sha)
        with self.blobs.open(sha) as fh:
            return fh.read(limit)

    def message_bodies(self, mailbox_id: int, item_ids: Sequence[int], actor: int | None = None,
                       limit: int | None = None) -> dict[int, bytes]:
        """The raw bytes of several messages (their first ``limit`` bytes when given): one ``read`` check and one
        query for the rows, then the blob files of the large ones."""
        if not item_ids:
            return {}
        with self.read() as s:
            coll = self._readable_mailbox(s, mailbox_id, actor)
            # By primary key only, the mailbox compared here: with ``collection_id = ?`` in the WHERE, SQLite
            # chose the (collection_id, modseq) index and read every message of the mailbox (and its inline
            # body's overflow pages) for each batch, a cost that grew with the mailbox.
            rows = [(item_id, inline, sha) for item_id, collection_id, inline, sha in s.connection().execute(
                select(Item.id, Item.collection_id, Item.inline_body, Item.blob_sha256)
                .where(Item.id.in_(list(item_ids)))).all() if collection_id == coll.id]
        found: dict[int, bytes] = {}
        for item_id, inline, sha in rows:
            if inline is not None:
                found[item_id] = inline if limit is None else inline[:limit]
            elif sha is None:
                found[item_id] = b""
            elif limit is None:
                found[item_id] = self.blobs.read(sha)
            else:
                with self.blobs.open(sha) as fh:
                    found[item_id] = fh.read(limit)
        return found

    def row_bodies(self, rows: Iterable[MessageRow]) -> dict[int, bytes]:
        """The raw bytes of messages whose rows were read with ``message_rows(bodies=True)`` (that call made the
        ``read`` check): inline ones from the rows, the others from their blob files. By item id."""
        found: dict[int, bytes] = {}
        for row in rows:
            if row.inline_body is not None:
                found[row.id] = row.inline_body
            elif row.blob_sha256 is None:
                found[row.id] = b""
            else:
                found[row.id] = self.blobs.read(row.blob_sha256)
        return found

    def search_messages(self, mailbox_id: int, criterion: Criterion, actor: int | None = None) -> list[tuple[int, int]]:
        """SEARCH in SQL: (UID, modseq in the reader's view) of every matching message, in UID order."""
        with self.read() as s:
            coll = self._readable_mailbox(s, mailbox_id, actor)
            missing = self._unindexed(s, coll.id)
            backlog = self.has_search_backlog(s, coll.id)
            if not missing and not backlog:  # the usual case: one session for the checks and the query
                return self._search(s, coll, criterion, actor)
        self._ensure_indexed(missing)
        while backlog and self.index_search_backlog(mailbox_id=coll.id):  # what the indexer has not done yet
            pass
        with self.read() as s:
            return self._search(s, self._readable_mailbox(s, mailbox_id, actor), criterion, actor)

    def _search(self, s: Session, coll: Collection, criterion: Criterion,
                actor: int | None) -> list[tuple[int, int]]:
        private = is_private_view(coll, actor)
        query = self._view_query(coll, actor, MessageFlags.uid, modseq_expr(private), items=uses_items(criterion))
        query = query.where(compile_criterion(criterion, private)).order_by(MessageFlags.uid)
        return [(int(uid), int(m)) for uid, m in _fetched(s.connection().execute(query))]

    def mailbox_changes(self, mailbox_id: int, since_modseq: int, known_last_uid: int, actor: int | None = None,
                        claim_recent: bool = False, already_told: dict[int, int] | None = None) -> MailboxDelta:
        """What changed after ``since_modseq`` for a session that knows the UIDs up to ``known_last_uid``.

        Read from the change log and the modseq indexes, so it costs what changed,
        not the mailbox size. The collection row is read first and bounds every
        other query (UIDs below its ``uidnext``, modseqs up to its ``modseq``), so a
        write committing meanwhile is reported by the next call, never half.
        """
        with self.read() as s:
            coll = self._readable_mailbox(s, mailbox_id, actor)
            top, uidnext = int(coll.modseq), int(coll.uidnext)
            delta = MailboxDelta(coll)
            if top <= since_modseq and uidnext - 1 <= known_last_uid:
                return delta
            delta.expunged = sorted(set(int(u) for u in s.scalars(select(Change.item_uid).where(
                Change.collection_id == coll.id, Change.modseq > since_modseq, Change.modseq <= top,
                Change.kind == "deleted", Change.item_uid.is_not(None), Change.item_uid <= known_last_uid))))
            delta.new_uids = [int(u) for u in s.scalars(select(MessageFlags.uid).where(
                MessageFlags.collection_id == coll.id, MessageFlags.uid > known_last_uid, MessageFlags.uid < uidnext)
                .order_by(MessageFlags.uid))]
            # (UID, modseq) of what changed; the session's own STOREs it already answered are left out
            # (``already_told``: UID → the modseq it reported), so they cost no row reads.
            touched = dict(s.execute(select(MessageFlags.uid, MessageFlags.modseq).where(
                MessageFlags.collection_id == coll.id, MessageFlags.modseq > since_modseq, MessageFlags.modseq <= top,
                MessageFlags.uid <= known_last_uid)).all())
            if is_private_view(coll, actor):
                for uid, modseq in s.execute(
                        select(MessageFlags.uid, MailUserFlags.modseq)
                        .join(MailUserFlags, MailUserFlags.item_id == MessageFlags.item_id)
                        .where(MailUserFlags.collection_id == coll.id, MailUserFlags.principal_id == actor,
                               MailUserFlags.modseq > since_modseq, MailUserFlags.modseq <= top,
                               MessageFlags.uid <= known_last_uid)):
                    touched[uid] = max(modseq, touched.get(uid, 0))
            told = already_told or {}
            touched = {uid: m for uid, m in touched.items() if told.get(uid) != m}
        if touched:
            delta.changed = self.message_rows(mailbox_id, sorted(touched), actor, dates=False)
        if claim_recent and delta.new_uids:
            delta.recent_from, delta.recent_to = self._claim_recent(mailbox_id, actor, delta.new_uids[-1])
        return delta
