"""The Store's write path: sessions, transactions, change recording and body placement.

Every Store part (accounts, items, mail …) is a mixin on :class:`StoreBase`, so
all of them write through the same transaction, change-log and after-commit
notification code. See :mod:`kantoor.storage.store` for the invariant.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import Engine, bindparam, event, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from kantoor.storage.blobs import BlobStore, StoredBlob
from kantoor.storage.database import WRITE_OPTION, is_sqlite
from kantoor.storage.errors import NotFound
from kantoor.storage.indexing import ItemIndex, card_columns
from kantoor.storage.models import (
    Blob,
    Change,
    Collection,
    Item,
    utcnow,
)
from kantoor.storage.notify import CHANNEL, ChangeEvent, Notifier
from kantoor.storage.policies import AccessPolicy, QuotaPolicy, SystemOnly, Unlimited
from kantoor.storage.write_gate import write_gate

_COLLECTION_BY_ID = select(Collection).where(Collection.id == bindparam("id"))
_COLLECTION_BY_ID_FOR_UPDATE = _COLLECTION_BY_ID.with_for_update()
INSERT_CHANGE = insert(Change.__table__)
_PG_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


@functools.cache
def _insert_returning_id(table: Any) -> Any:
    return insert(table).returning(table.c.id)


@functools.cache
def insert_columns(table: Any) -> tuple[tuple[str, bool, Any], ...]:
    """(key, default is a callable, default) of every non-key column of ``table``, read once per table."""
    columns = []
    for column in table.columns:
        if column.primary_key:
            continue
        default = column.default
        if default is None:
            columns.append((column.key, False, None))
        else:
            columns.append((column.key, not default.is_scalar, default.arg))
    return tuple(columns)


def row_values(obj: Any) -> dict[str, Any]:
    """Every non-key column's value for a new ORM object's INSERT, column defaults applied to the object too.
    The defaults go straight into the object's ``__dict__``: the caller marks every attribute committed right
    after the INSERT (make_transient_to_detached), and an instrumented ``setattr`` per default column (27 of
    an item's) cost ~40 % of the item INSERT's CPU."""
    state = obj.__dict__
    values: dict[str, Any] = {}
    for key, call, default in insert_columns(type(obj).__table__):
        if key in state:
            values[key] = state[key]
        else:
            # A callable default is wrapped by SQLAlchemy to take the execution context (none needed here).
            values[key] = state[key] = default(None) if call else default
    return values


def insert_detached_many(s: Session, objs: list[Any]) -> None:
    """:func:`insert_detached` for several new objects of one model with ONE statement (a multi-row INSERT …
    RETURNING id, the ids in the order of ``objs``): a group commit of several messages runs one INSERT for
    its items instead of one each."""
    if len(objs) == 1:
        insert_detached(s, objs[0])
        return
    table = type(objs[0]).__table__
    rows = [row_values(obj) for obj in objs]
    ids = s.connection().execute(_insert_returning_ids_in_order(table), rows).scalars().all()
    for obj, new_id in zip(objs, ids, strict=True):
        obj.id = new_id
        make_transient_to_detached(obj)


@functools.cache
def _insert_returning_ids_in_order(table: Any) -> Any:
    return insert(table).returning(table.c.id, sort_by_parameter_order=True)


def insert_detached(s: Session, obj: Any) -> None:
    """INSERT a new ORM object's row with one Core statement (in ``s``'s transaction) and make ``obj`` what
    a flushed, committed one would be: every column loaded (defaults applied to it too), ``id`` set,
    detached (for models whose attribute names are their column names, as Item). The ORM's unit of work
    for one new object cost more than the statement (9 % of an SMTP delivery's CPU, ~40 % of a small
    PUT's write transaction)."""
    obj.id = s.connection().execute(_insert_returning_id(type(obj).__table__), row_values(obj)).scalar_one()
    make_transient_to_detached(obj)


@functools.cache
def _blob_upsert(sqlite: bool):  # type: ignore[no-untyped-def]
    """INSERT a blob row with its refcount (1 per reference), or add that count to the row there is (built once
    per dialect)."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    blobs = Blob.__table__
    statement = (sqlite_dialect.insert if sqlite else postgresql.insert)(blobs)
    return statement.on_conflict_do_update(
        index_elements=[blobs.c.sha256],
        set_={"refcount": blobs.c.refcount + statement.excluded.refcount, "updated_at": statement.excluded.updated_at})


@dataclass
class _SharedRead:
    """The read session a thread's request_scope() shares, and how many read() blocks use it now."""

    session: Session | None = None
    depth: int = 0
    stale: bool = False  # a write happened while a read block held it: end it after that block


# SQLite connections a forked process inherited from its parent's kept writers: referenced for good, never
# closed there, since closing the parent's database file in the child would drop the child's own POSIX locks
# on it (sqlite.org/howtocorrupt.html, "carrying an open database connection across a fork").
_INHERITED: list[Connection] = []


class KeptWriter:
    """SQLite: the connection and the Session every write transaction of a Store runs on, kept between them.

    The writer gate lets one write transaction of the process run at a time, so they all fit on one
    connection, and setting up a Session, a pool checkout and a Connection per transaction and tearing them
    down again cost more CPU than a delivery's statements (~105 µs of an empty write(), ~14 µs now). The
    database transaction is begun (BEGIN IMMEDIATE) and committed on the sqlite3 connection itself; the
    Session's own transaction spans those, so its bookkeeping is skipped. That holds while the ORM flushes
    nothing (deliveries, APPENDs and new items write with Core or raw statements): a write that flushed ORM
    objects is committed by ``Session.commit()``, a failed one rolled back by ``Session.rollback()``, and
    that Session is closed and let go, exactly as with a Session per transaction (so the ORM state of
    objects is what it was: a rollback's snapshot only ever holds the failed write's own objects). Objects
    leave every write detached, as ``Session.close()`` leaves them.

    The connection's page cache also stays warm (the pool handed its connections out in turn). Used only by
    the gate's holder; a write() inside a write() of the same thread finds it taken and sets up a session of
    its own, as before.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None
        self._session: Session | None = None
        self._driver: Any = None  # the sqlite3 connection
        self._pid = 0
        self._flushed = False  # the ORM flushed objects in this transaction
        self.taken = False
        # Core.close() disposes of the engine: the kept connection goes too (a checked-out one would outlive it).
        event.listen(engine, "engine_disposed", self._on_dispose)

    def begin(self, events: list[ChangeEvent]) -> Session:
        """Take the kept Session with a write transaction begun; ``events`` collects its change events."""
        assert not self.taken
        if self._pid != os.getpid():  # first use, or a forked child's: not the parent's connection
            if self._connection is not None:
                _INHERITED.append(self._connection)
            self._connection = self._session = self._driver = None
            self._pid = os.getpid()
        if self._connection is None:
            self._connection = self._engine.connect().execution_options(**{WRITE_OPTION: True})
            self._driver = self._connection.connection.driver_connection
        session = self._session
        if session is None:
            # Bound to the connection: when the Session begins a transaction, it is that connection's.
            session = self._session = Session(bind=self._connection, expire_on_commit=False)
            event.listen(session, "after_flush", self._after_flush)
        self.taken = True
        self._flushed = False
        session.info["events"] = events
        try:
            if session.in_transaction():
                # The Session's transaction goes on from the last write: begin the database's alone.
                self._on_driver("BEGIN IMMEDIATE")
            else:
                session.connection()  # the Session begins: BEGIN IMMEDIATE through the dialect (database.py)
        except BaseException:
            self.abort()
            raise
        return session

    def commit(self) -> None:
        """Commit the write transaction and free the Session (or, failing, roll back, free it and raise)."""
        session = self._session
        assert session is not None
        try:
            session.flush()  # what Session.commit() would flush first
            if self._flushed:
                session.commit()
                session.close()
                self._session = None  # as a Session per transaction: its objects' session is gone
            else:
                self._on_driver(None)
                session.expunge_all()
        except BaseException:
            self.abort()
            raise
        self.taken = False

    def abort(self) -> None:
        """Roll the write transaction back and let the Session go; a connection that cannot is dropped."""
        session, self._session = self._session, None
        try:
            if session is not None:
                session.rollback()  # the database's transaction, and the ORM's objects of this write
                session.close()
        except BaseException:
            self.drop()
            raise
        finally:
            self.taken = False

    def drop(self) -> None:
        """Close the kept connection (the next write opens another)."""
        connection, self._connection, self._session, self._driver = self._connection, None, None, None
        if connection is not None and self._pid == os.getpid():
            try:
                connection.invalidate()  # closes the sqlite3 connection: whatever was open on it is rolled back
            finally:
                connection.close()

    def _on_driver(self, statement: str | None) -> None:
        """``statement`` (or a commit, for None) on the sqlite3 connection, an error raised as SQLAlchemy would."""
        driver = self._driver
        try:
            if statement is None:
                driver.commit()
            else:
                driver.execute(statement)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(statement or "COMMIT", None, exc, sqlite3.Error) from exc

    def _after_flush(self, _session: Session, _context: Any) -> None:
        self._flushed = True

    def _on_dispose(self, _engine: Engine) -> None:
        if not self.taken:
            self.drop()


@dataclass(frozen=True)
class Body:
    """Where an item's bytes live: inline in the row or in a blob file."""

    inline: bytes | None
    blob_sha256: str | None
    size: int


def body_columns(stored: Body, sha: str, content_type: str, index: ItemIndex) -> dict[str, Any]:
    """An item's body and index columns, by column name, for ``stored`` indexed as ``index``."""
    return {
        "blob_sha256": stored.blob_sha256, "inline_body": stored.inline, "size": stored.size,
        "etag": f'"{sha[:40]}"', "content_type": content_type, "updated_at": utcnow(),
        "component": index.component, "ical_uid": index.ical_uid, "dtstart": index.dtstart, "dtend": index.dtend,
        "recurring": index.recurring, "fn": index.fn, "emails": " ".join(index.emails),
        **card_columns(index),
        "subject": index.subject, "from_addr": index.from_addr, "to_addr": index.to_addr,
        "message_id": index.message_id,
    }


# Bodies up to this size live in the item's row, larger ones in blob files. SQLite reads a BLOB of up to
# ~50 KB faster from its own 4 KiB pages than from a file of its own (sqlite.org/intern-v-extern-blob.html:
# x1.17 at 50 KB, x0.89 at 100 KB), and storing one in the row saves the file's create, fsync and rename, and
# its directory's fsync, on the way to a delivery's reply: with 16 KiB, half of a realistic mailbox (5-50 KiB
# messages) went to files and an IMAP APPEND waited for two fsyncs more (bench/imap.py).
INLINE_LIMIT = 64 * 1024


class StoreBase:
    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        notifier: Notifier | None = None,
        access: AccessPolicy | None = None,
        quota: QuotaPolicy | None = None,
        inline_limit: int = INLINE_LIMIT,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.notifier = notifier or Notifier()
        self.access: AccessPolicy = access or SystemOnly()
        self.quota: QuotaPolicy = quota or Unlimited()
        self.inline_limit = inline_limit
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._is_sqlite = is_sqlite(engine)
        self._write_gate = write_gate(engine) if self._is_sqlite else None
        self._kept_writer = KeptWriter(engine) if self._is_sqlite else None
        # Open request_scope()s by thread id (see _SharedRead).
        self._scopes: dict[int, _SharedRead] = {}
        # Test seam: called with a stage name during writes ("after_blob_write");
        # raising from it simulates a crash half-way through a write.
        self.fault_hook: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ sessions
    @contextmanager
    def read(self) -> Iterator[Session]:
        shared = self._scopes.get(threading.get_ident())
        if shared is not None:
            # Inside request_scope(): every read of this request shares one session.
            if shared.session is None:
                shared.session = self._sessions(autoflush=False)
            shared.depth += 1
            try:
                yield shared.session
            except SQLAlchemyError:
                shared.stale = True  # a failed statement may have ended the transaction: start afresh
                raise
            finally:
                shared.depth -= 1
                if shared.depth == 0 and shared.stale:
                    self.end_shared_read()
            return
        session = self._sessions()
        try:
            yield session
        finally:
            # close() (not rollback()) ends the transaction without expiring the
            # objects, so callers can read them after the session is gone.
            session.close()

    @contextmanager
    def request_scope(self) -> Iterator[None]:
        """Let every ``read()`` of this thread until the block ends share one session.

        An HTTP request of a DAV client makes a handful of small reads (credentials,
        path, locks); a session each cost as much as the queries (py-spy,
        bench/webdav.py). The shared read transaction ends at the next ``write()``
        of the thread (so what is read after a write sees it), at
        :meth:`end_shared_read` and when the block ends; objects read stay usable
        after that, as with ``read()``. The block may end in another thread (a
        WSGI response closed by the server), so scopes are kept by thread id.
        """
        thread = threading.get_ident()
        if thread in self._scopes:
            yield  # already inside one
            return
        shared = self._scopes[thread] = _SharedRead()
        try:
            yield
        finally:
            self._scopes.pop(thread, None)
            if shared.session is not None:
                shared.session.close()

    def end_shared_read(self) -> None:
        """End this thread's shared read transaction now (the next read starts a new one)."""
        shared = self._scopes.get(threading.get_ident())
        if shared is None or shared.session is None:
            return
        if shared.depth:
            shared.stale = True  # called inside a read block: that block keeps its session
            return
        shared.session.close()
        shared.session, shared.stale = None, False

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Hold this process's turn to write on SQLite (the writer gate) across several ``write()`` blocks,
        which re-enter it; nothing on PostgreSQL. (A group commit waits here before it picks its group.)"""
        gate = self._write_gate
        if gate is None:
            yield
            return
        gate.acquire()
        try:
            yield
        finally:
            gate.release()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction; change events are published after commit."""
        self.end_shared_read()
        gate = self._write_gate
        if gate is not None:
            gate.acquire()
        try:
            events: list[ChangeEvent] = []
            kept = self._kept_writer
            if kept is not None and not kept.taken:
                session = kept.begin(events)
                try:
                    yield session
                except BaseException:
                    kept.abort()
                    raise
                kept.commit()
            else:
                session = self._sessions()
                session.info["events"] = events
                try:
                    session.connection(execution_options={WRITE_OPTION: True})
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
                finally:
                    session.close()
        finally:
            if gate is not None:
                gate.release()
        for change in events:
            self.notifier.publish(change)

    def _fault(self, stage: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(stage)


    def _locked_collection(self, s: Session, collection_id: int) -> Collection:
        # FOR UPDATE serialises modseq/UID allocation on PostgreSQL; SQLite's
        # BEGIN IMMEDIATE already holds the database write lock.
        # (Statements built once: every item write starts here.)
        coll = s.scalar(_COLLECTION_BY_ID if self._is_sqlite else _COLLECTION_BY_ID_FOR_UPDATE, {"id": collection_id})
        if coll is None:
            raise NotFound(f"no collection {collection_id}")
        return coll

    def _record_change(self, s: Session, coll: Collection, name: str, uid: int | None, kind: str) -> int:
        coll.modseq += 1
        coll.updated_at = utcnow()
        # A plain INSERT, not an ORM object (nothing uses one): an object less in the flush
        # was ~10% of a small PUT's write transaction (cProfile).
        s.connection().execute(INSERT_CHANGE, {"collection_id": coll.id, "modseq": coll.modseq, "item_name": name,
                                                "item_uid": uid, "kind": kind})
        self._announce_change(s, coll, kind, coll.modseq, name, uid)
        return coll.modseq

    def _announce_change(self, s: Session, coll: Collection, kind: str, modseq: int, name: str,
                         uid: int | None) -> None:
        """The after-commit event of a change already in the change log (and on PostgreSQL its NOTIFY)."""
        event = ChangeEvent(collection_id=coll.id, owner_id=coll.owner_id, kind=kind, modseq=modseq,
                            item_name=name, item_uid=uid)
        s.info["events"].append(event)
        if not self._is_sqlite:
            # Delivered by PostgreSQL to other processes only if this transaction commits.
            s.execute(_PG_NOTIFY, {"channel": CHANNEL, "payload": event.to_payload()})

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


    def _reference_blob(self, s: Session, stored: Body) -> None:
        """Count one more reference to ``stored``'s blob (the row is created by its first user).
        One upsert (INSERT … ON CONFLICT DO UPDATE, SQLite and PostgreSQL alike), no ORM object:
        a SELECT, an autoflush and an INSERT before were 6 % of an SMTP delivery's CPU."""
        if stored.blob_sha256 is None:
            return
        s.connection().execute(_blob_upsert(self._is_sqlite), {
            "sha256": stored.blob_sha256, "size": stored.size, "refcount": 1, "updated_at": utcnow()})

    def _reference_blobs(self, s: Session, bodies: list[Body]) -> None:
        """:meth:`_reference_blob` for several bodies with one statement (a group commit's messages). One row
        per distinct blob with its count: PostgreSQL refuses a multi-row upsert that meets one key twice."""
        counts: dict[str, list[int]] = {}
        for body in bodies:
            if body.blob_sha256 is not None:
                counts.setdefault(body.blob_sha256, [body.size, 0])[1] += 1
        if counts:
            now = utcnow()
            s.connection().execute(_blob_upsert(self._is_sqlite), [
                {"sha256": sha, "size": size, "refcount": n, "updated_at": now} for sha, (size, n) in counts.items()])

    def _apply_body(self, s: Session, item: Item, stored: Body, sha: str, content_type: str, index: ItemIndex) -> None:
        self._reference_blob(s, stored)
        for column, value in body_columns(stored, sha, content_type, index).items():
            setattr(item, column, value)


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

