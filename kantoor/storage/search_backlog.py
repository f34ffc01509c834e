"""The search backlog: a message's SEARCH rows are written after its delivery, not in it.

SEARCH's string keys run as SQL over one row per header field and one row of decoded
text per message (:class:`~kantoor.storage.models.MessageHeader`,
:class:`~kantoor.storage.models.MessageText`). Writing them in the delivery's own
transaction was a third of the pages a delivery wrote under SQLite's one write lock,
and decoding them a fifth of its parse: bench/smtp.py delivered ~11 % more messages a
second without them. So a delivery notes the message in ``search_backlog`` (one
integer per message) and the rows are written later, in batches:

- by the server's indexer (``kantoor.server``), for the messages its process delivered
  (or copied before they were indexed), once deliveries pause for :data:`QUIET_SECONDS`,
  or after :data:`MAX_DELAY_SECONDS` under a load that never pauses — as Dovecot's and
  Stalwart's full-text indexers run after delivery;
- by a SEARCH, for whatever its mailbox still has in the backlog, before it runs: a
  search never misses a message (:meth:`SearchBacklogMixin.index_search_backlog`);
- at start-up, for anything a stopped or crashed process left.

Each batch takes its messages out of the backlog in the transaction that writes their
rows (``DELETE … RETURNING``): two processes or a SEARCH racing the indexer write each
message's rows exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from sqlalchemy import Select, delete, insert, select
from sqlalchemy.orm import Session

from kantoor.storage.message_index import MAX_PARSE, MessageIndex, search_fields
from kantoor.storage.models import Item, MessageHeader, MessageText, SearchBacklog
from kantoor.storage.transactions import StoreBase

log = logging.getLogger("kantoor.storage")

# Messages indexed per transaction (the rows of 200 typical messages: ~1,200 pages, a few ms of the write lock).
BATCH = 200
# The indexer waits for deliveries to pause this long, so a burst of mail is stored first and indexed after.
QUIET_SECONDS = 0.2
# ... but never longer than this behind the oldest message it has to index (a load that never pauses).
MAX_DELAY_SECONDS = 10.0

_INSERT_HEADERS = insert(MessageHeader.__table__)
_INSERT_TEXT = insert(MessageText.__table__)


def write_search_rows(s: Session, indexes: dict[int, MessageIndex]) -> None:
    """The SEARCH rows (header fields, text) of the messages ``indexes`` maps by item id, in ``s``'s transaction."""
    if not indexes:
        return
    conn = s.connection()
    headers = [{"item_id": item_id, "name": n, "value": v}
               for item_id, index in indexes.items() for n, v in index.headers]
    if headers:
        conn.execute(_INSERT_HEADERS, headers)
    conn.execute(_INSERT_TEXT, [{"item_id": item_id, "body": index.text} for item_id, index in indexes.items()])


def _search_index(item_id: int, raw: bytes) -> MessageIndex:
    """The message's SEARCH rows (only those: the rest of its index was written at delivery); one the parser
    fails on gets empty rows (it matches no string key) instead of staying in the backlog, where every SEARCH
    of its mailbox would try it again and fail."""
    try:
        headers, text = search_fields(raw)
        return MessageIndex(envelope="", bodystructure="", body="", sent_date=None, headers=headers, text=text)
    except Exception:
        log.exception("indexing message %d for SEARCH failed; its header and text are not searchable", item_id)
        return MessageIndex(envelope="", bodystructure="", body="", sent_date=None)


def in_mailbox(mailbox_id: int | None) -> Select[tuple[int]]:
    """The backlog's item ids (of ``mailbox_id``'s messages, or all), oldest first. Read from the backlog, each
    entry's mailbox by its item's primary key: joined the other way round, SQLite walked every message of the
    mailbox to find the (usually no) entries, on every SEARCH."""
    query = select(SearchBacklog.item_id)
    if mailbox_id is not None:
        query = query.where(select(Item.collection_id).where(Item.id == SearchBacklog.item_id).scalar_subquery()
                            == mailbox_id)
    return query.order_by(SearchBacklog.item_id)


def taken_from_search_backlog(s: Session, item_ids: list[int]) -> list[int]:
    """Those of ``item_ids`` that were in the backlog, no longer there (in ``s``'s write transaction)."""
    if not item_ids:
        return []
    return list(s.scalars(delete(SearchBacklog).where(SearchBacklog.item_id.in_(item_ids))
                          .returning(SearchBacklog.item_id)))


class LocalBacklog:
    """The messages this process delivered that wait for their SEARCH rows, and when deliveries happened:
    what the indexer takes, and when (:meth:`due`). The table is what counts; this only saves the indexer a
    query of it while deliveries go on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: list[int] = []
        self._first_at: float | None = None  # when the oldest id here was noted
        self._last_at = 0.0  # when a delivery last noted one

    def noted(self, item_ids: Sequence[int]) -> None:
        """Delivered (committed): ``item_ids`` wait for their rows."""
        now = time.monotonic()
        with self._lock:
            self._ids.extend(item_ids)
            if self._first_at is None:
                self._first_at = now
            self._last_at = now

    def due(self, now: float | None = None) -> bool:
        """Whether the indexer should take a batch now: deliveries paused, or the oldest waited too long."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return bool(self._ids) and (now - self._last_at >= QUIET_SECONDS
                                        or self._first_at is not None and now - self._first_at >= MAX_DELAY_SECONDS)

    def take(self, limit: int = BATCH) -> list[int]:
        """The oldest ``limit`` ids, no longer noted here (give them back with :meth:`noted` if indexing fails)."""
        with self._lock:
            taken, self._ids = self._ids[:limit], self._ids[limit:]
            if not self._ids:
                self._first_at = None
            return taken

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)


class SearchBacklogMixin(StoreBase):
    @property
    def search_backlog(self) -> LocalBacklog:
        """This process's own deliveries waiting for their SEARCH rows (one per Store)."""
        backlog = self.__dict__.get("_search_backlog")
        if backlog is None:
            backlog = self.__dict__.setdefault("_search_backlog", LocalBacklog())  # atomic: one per Store
        return backlog

    def index_search_backlog(self, item_ids: Sequence[int] | None = None, mailbox_id: int | None = None,
                             limit: int = BATCH) -> int:
        """Write the SEARCH rows of up to ``limit`` messages in the backlog — of ``item_ids``, of the mailbox
        ``mailbox_id``, or the oldest — and take them out of it; returns how many it found there (0: none
        left of those asked for). The bodies are read and parsed before the write transaction, so other
        writers wait only for the inserts."""
        waiting = in_mailbox(mailbox_id)
        if item_ids is not None:
            if not item_ids:
                return 0
            waiting = waiting.where(SearchBacklog.item_id.in_(list(item_ids)))
        with self.read() as s:
            ids = list(s.scalars(waiting.limit(limit)))
            if not ids:
                return 0
            rows = list(s.execute(select(Item.id, Item.inline_body, Item.blob_sha256).where(Item.id.in_(ids))))
        indexes = {item_id: _search_index(item_id, self.indexed_bytes(inline, sha)) for item_id, inline, sha in rows}
        with self.write() as s:
            # Only what is still in the backlog now: another process or a SEARCH may have indexed some meanwhile.
            # An entry whose message is gone goes too (it has no rows to write): none may stay for ever.
            taken = taken_from_search_backlog(s, ids)
            write_search_rows(s, {item_id: indexes[item_id] for item_id in taken if item_id in indexes})
        return len(ids)

    def has_search_backlog(self, s: Session, mailbox_id: int) -> bool:
        """Whether a message of ``mailbox_id`` still waits for its SEARCH rows (the backlog is short: it is
        scanned, not the mailbox)."""
        return s.scalar(in_mailbox(mailbox_id).limit(1)) is not None

    def indexed_bytes(self, inline: bytes | None, sha: str | None) -> bytes:
        """The part of a stored message the index reads: its first MAX_PARSE bytes (b"" if its blob is gone,
        so one lost file cannot keep the backlog from emptying)."""
        if inline is not None:
            return inline[:MAX_PARSE]
        if sha is None:
            return b""
        try:
            with self.blobs.open(sha) as fh:
                return fh.read(MAX_PARSE)
        except FileNotFoundError:
            return b""
