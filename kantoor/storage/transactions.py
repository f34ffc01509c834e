"""The Store's write path: sessions, transactions, change recording and body placement.

Every Store part (accounts, items, mail …) is a mixin on :class:`StoreBase`, so
all of them write through the same transaction, change-log and after-commit
notification code. See :mod:`kantoor.storage.store` for the invariant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from kantoor.storage.blobs import BlobStore, StoredBlob
from kantoor.storage.database import WRITE_OPTION, is_sqlite
from kantoor.storage.errors import NotFound
from kantoor.storage.indexing import ItemIndex
from kantoor.storage.models import (
    Blob,
    Change,
    Collection,
    Item,
    utcnow,
)
from kantoor.storage.notify import CHANNEL, ChangeEvent, Notifier
from kantoor.storage.policies import AccessPolicy, QuotaPolicy, SystemOnly, Unlimited


@dataclass(frozen=True)
class Body:
    """Where an item's bytes live: inline in the row or in a blob file."""

    inline: bytes | None
    blob_sha256: str | None
    size: int


class StoreBase:
    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        notifier: Notifier | None = None,
        access: AccessPolicy | None = None,
        quota: QuotaPolicy | None = None,
        inline_limit: int = 16 * 1024,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.notifier = notifier or Notifier()
        self.access: AccessPolicy = access or SystemOnly()
        self.quota: QuotaPolicy = quota or Unlimited()
        self.inline_limit = inline_limit
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._is_sqlite = is_sqlite(engine)
        # Test seam: called with a stage name during writes ("after_blob_write");
        # raising from it simulates a crash half-way through a write.
        self.fault_hook: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ sessions
    @contextmanager
    def read(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
        finally:
            # close() (not rollback()) ends the transaction without expiring the
            # objects, so callers can read them after the session is gone.
            session.close()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction; change events are published after commit."""
        session = self._sessions()
        session.connection(execution_options={WRITE_OPTION: True})
        events: list[ChangeEvent] = []
        session.info["events"] = events
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        for event in events:
            self.notifier.publish(event)

    def _fault(self, stage: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(stage)


    def _locked_collection(self, s: Session, collection_id: int) -> Collection:
        # FOR UPDATE serialises modseq/UID allocation on PostgreSQL; SQLite's
        # BEGIN IMMEDIATE already holds the database write lock.
        query = select(Collection).where(Collection.id == collection_id)
        if not self._is_sqlite:
            query = query.with_for_update()
        coll = s.scalar(query)
        if coll is None:
            raise NotFound(f"no collection {collection_id}")
        return coll

    def _record_change(self, s: Session, coll: Collection, name: str, uid: int | None, kind: str) -> int:
        coll.modseq += 1
        coll.updated_at = utcnow()
        s.add(Change(collection_id=coll.id, modseq=coll.modseq, item_name=name, item_uid=uid, kind=kind))
        event = ChangeEvent(collection_id=coll.id, owner_id=coll.owner_id, kind=kind, modseq=coll.modseq,
                            item_name=name, item_uid=uid)
        s.info["events"].append(event)
        if not self._is_sqlite:
            # Delivered by PostgreSQL to other processes only if this transaction commits.
            s.execute(text("SELECT pg_notify(:channel, :payload)"),
                      {"channel": CHANNEL, "payload": event.to_payload()})
        return coll.modseq

    def _store_body(self, body: bytes | BinaryIO | Iterable[bytes],
                    max_size: int | None) -> tuple[Body, str, bytes | None]:
        """Keep small bodies for inline storage, stream large ones to a blob file."""
        if isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
            if max_size is not None and len(data) > max_size:
                from kantoor.storage.blobs import BlobTooLarge
                raise BlobTooLarge(f"more than {max_size} bytes")
            if len(data) <= self.inline_limit:
                return Body(data, None, len(data)), hashlib.sha256(data).hexdigest(), data
        stored: StoredBlob = self.blobs.write(body, max_size=max_size)
        self._fault("after_blob_write")
        return Body(None, stored.sha256, stored.size), stored.sha256, None


    def _apply_body(self, s: Session, item: Item, stored: Body, sha: str, content_type: str, index: ItemIndex) -> None:
        if stored.blob_sha256:
            blob = s.get(Blob, stored.blob_sha256)
            if blob is None:
                s.add(Blob(sha256=stored.blob_sha256, size=stored.size, refcount=1, updated_at=utcnow()))
            else:
                blob.refcount += 1
                blob.updated_at = utcnow()
        item.blob_sha256 = stored.blob_sha256
        item.inline_body = stored.inline
        item.size = stored.size
        item.etag = f'"{sha[:40]}"'
        item.content_type = content_type
        item.updated_at = utcnow()
        item.component = index.component
        item.ical_uid = index.ical_uid
        item.dtstart = index.dtstart
        item.dtend = index.dtend
        item.recurring = index.recurring
        item.fn = index.fn
        item.emails = " ".join(index.emails)
        item.subject = index.subject
        item.from_addr = index.from_addr
        item.to_addr = index.to_addr
        item.message_id = index.message_id


    @staticmethod
    def _collection_and_item(s: Session, collection_id: int, item_name: str | None) -> tuple[Collection, Item | None]:
        """The collection, and the named item in it when ``item_name`` is given; NotFound otherwise."""
        coll = s.get(Collection, collection_id)
        if coll is None:
            raise NotFound(f"no collection {collection_id}")
        item = None
        if item_name is not None:
            item = s.scalar(select(Item).where(Item.collection_id == coll.id, Item.name == item_name))
            if item is None:
                raise NotFound(f"no item {item_name}")
        return coll, item

    def _release_blobs(self, s: Session, sha_query) -> None:  # type: ignore[no-untyped-def]
        counts: dict[str, int] = {}
        for sha in s.scalars(sha_query):
            counts[sha] = counts.get(sha, 0) + 1
        for sha, n in counts.items():
            s.execute(update(Blob).where(Blob.sha256 == sha).values(refcount=Blob.refcount - n, updated_at=utcnow()))


def same_or_null(column, value):  # type: ignore[no-untyped-def]
    """``column = value``, or ``column IS NULL`` for None (SQL's = never matches NULL)."""
    return column.is_(None) if value is None else column == value

