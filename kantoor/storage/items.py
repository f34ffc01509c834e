"""Items in collections: create/replace with preconditions, read, delete, change log.

PUTs that wait for the write transaction at the same time (eight WebDAV clients) are written
together in one (group commit, as deliveries are: storage/mail.py), each caller returning after
that commit; a group that fails is written again PUT by PUT.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import Select, and_, bindparam, delete, insert, inspect, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from kantoor.storage import raw_statements as raw
from kantoor.storage.errors import (
    AlreadyExists,
    NotFound,
    PreconditionFailed,
)
from kantoor.storage.group_commit import GroupCommit, GroupJob
from kantoor.storage.indexing import ItemIndex, index_for
from kantoor.storage.locks import WriteClaim, check_write_claim, check_write_claims
from kantoor.storage.models import (
    Change,
    Collection,
    Grant,
    Item,
    utcnow,
)
from kantoor.storage.names import (
    TOOL_OF_KIND,
    validate_item_name,
)
from kantoor.storage.transactions import (
    INSERT_CHANGE,
    Body,
    StoreBase,
    body_columns,
    insert_detached,
    row_values,
)

_ITEMS = Item.__table__
_COLLECTIONS = Collection.__table__


class LoadedColumns:
    """The columns a plain ``select(Model)`` loads (deferred ones left out), for Core statements
    whose rows :func:`loaded_detached` turns into ORM objects."""

    def __init__(self, model: Any) -> None:
        self.model = model
        attrs = [attr for attr in inspect(model).column_attrs if not attr.deferred]
        self.keys = [attr.key for attr in attrs]
        self.columns = [attr.columns[0] for attr in attrs]
        self.new_instance = model._sa_class_manager.new_instance

    def __len__(self) -> int:
        return len(self.keys)


COLLECTION_COLUMNS = LoadedColumns(Collection)
ITEM_COLUMNS = LoadedColumns(Item)


def loaded_detached(loaded: LoadedColumns, values: Sequence[Any]) -> Any:
    """A detached ORM object with ``values`` (in ``loaded``'s column order) as its loaded state: what
    the ORM leaves of an object read in a session that has since closed (deferred columns unloaded),
    without the ORM's per-statement loading machinery (as much CPU as the statement itself on the
    drive's hot path, bench/webdav.py) and outside every identity map. Changing it writes nothing:
    write its columns with a Core statement (see put_item)."""
    obj = loaded.new_instance()
    obj.__dict__.update(zip(loaded.keys, values, strict=True))
    instance_state(obj).key = (loaded.model, (obj.id,), None)
    return obj


# Statements of the write path, built once: constructing select(...).where(...) cost
# about as much as running it (cProfile of a WebDAV PUT); SQLAlchemy caches the SQL
# compiled for a statement object, so only the bound values change per call.
_ITEM_NAMED = select(Item).where(Item.collection_id == bindparam("collection"), Item.name == bindparam("name"))
# The collection a write locks and its item of that name, read as plain rows (loaded_detached): the
# objects then never join the write session, so its commit has nothing to flush.
_COLLECTION_ROW = select(*COLLECTION_COLUMNS.columns).where(_COLLECTIONS.c.id == bindparam("collection"))
_COLLECTION_ROW_FOR_UPDATE = _COLLECTION_ROW.with_for_update()
_ITEM_ROW = select(*ITEM_COLUMNS.columns).where(_ITEMS.c.collection_id == bindparam("collection"),
                                                _ITEMS.c.name == bindparam("name"))
_COLLECTION_WITH_ITEM = (select(*COLLECTION_COLUMNS.columns, *ITEM_COLUMNS.columns)
                         .select_from(_COLLECTIONS.outerjoin(_ITEMS, and_(
                             _ITEMS.c.collection_id == _COLLECTIONS.c.id, _ITEMS.c.name == bindparam("name"))))
                         .where(_COLLECTIONS.c.id == bindparam("collection")))
_N_COLLECTION = len(COLLECTION_COLUMNS)
_ITEM_ID_AT = _N_COLLECTION + ITEM_COLUMNS.keys.index("id")
_UID_CLASH = select(Item.name).where(Item.collection_id == bindparam("collection"), Item.ical_uid == bindparam("uid"),
                                     Item.name != bindparam("name"))
# put_item writes the item row (insert_detached for a new one) and the collection's modseq with plain
# INSERT/UPDATE statements and gives the objects those values as their committed state: the ORM's flush
# of one item and one collection was ~40% of a small PUT's write transaction (1.0 of 2.6 ms CPU).
_UPDATE_ITEM = update(_ITEMS).where(_ITEMS.c.id == bindparam("item_pk"))  # SET: the keys of the parameters
_BUMP_COLLECTION = (update(_COLLECTIONS).where(_COLLECTIONS.c.id == bindparam("coll_pk"))
                    .values(modseq=bindparam("coll_modseq"), updated_at=bindparam("coll_updated_at")))
# Mapped attribute → column name.
_ITEM_COLUMNS = {attr.key: attr.columns[0].key for attr in inspect(Item).column_attrs}


@functools.lru_cache(maxsize=64)  # one per group size in use
def _items_named(names: int) -> Select:
    """The items of a collection with one of ``names`` names (parameters ``collection``, ``n0`` …): a group
    of PUTs reads the items it replaces with one statement. Plain parameters, compiled once per size (an
    expanding IN is rendered anew at every execution)."""
    return select(*ITEM_COLUMNS.columns).where(_ITEMS.c.collection_id == bindparam("collection"),
                                               _ITEMS.c.name.in_([bindparam(f"n{n}") for n in range(names)]))


@functools.lru_cache(maxsize=64)  # per dialect and group size in use
def _insert_items(dialect: Dialect, rows: int) -> raw.RawStatement:
    """A multi-row INSERT of ``rows`` new items (parameters ``<column>_<row>``) RETURNING (id, collection_id,
    name), run on the DB-API cursor of the write transaction (kantoor.storage.raw_statements). Through
    SQLAlchemy's execute, its parameter processing of ~35 columns per row was ~10 % of a small PUT's server
    CPU (py-spy); a group of four 4 KiB files took 69 µs per row that way, 43 µs this way. Each row's id comes
    back with its (collection, name), which a group holds once: no RETURNING order is relied on (SQLite
    guarantees one only when inserting row by row, as insert_detached_many's sort_by_parameter_order does)."""
    columns = [column for column in _ITEMS.columns if not column.primary_key]
    statement = insert(_ITEMS).values([
        {column.key: bindparam(f"{column.key}_{row}", type_=column.type) for column in columns}
        for row in range(rows)]).returning(_ITEMS.c.id, _ITEMS.c.collection_id, _ITEMS.c.name)
    return raw.RawStatement(statement, dialect)


def _insert_new_items(s: Session, items: list[Item]) -> None:
    """INSERT new items (at most one per collection and name) and make each what a committed, detached one is
    (see insert_detached)."""
    if len(items) == 1:
        insert_detached(s, items[0])
        return
    values = {f"{key}_{row}": value for row, item in enumerate(items) for key, value in row_values(item).items()}
    ids = {(row["collection_id"], row["name"]): row["id"]
           for row in raw.returning(s, _insert_items(s.get_bind().dialect, len(items)), values)}
    for item in items:
        item.__dict__["id"] = ids[(item.collection_id, item.name)]
        make_transient_to_detached(item)


@dataclass
class _Put(GroupJob):
    """One put_item call, its body stored and indexed, waiting to be written."""

    collection_id: int
    name: str
    stored: Body
    sha: str
    content_type: str
    index: ItemIndex
    actor: int | None
    if_match: str | None
    if_none_match: bool
    claim: WriteClaim | None


# How long the first PUT of a group waits for the others it expects before it writes (GroupCommit's
# expect_recent). Expected: as many PUTs as
# were waiting or being written at once while the last group was written (PostgreSQL's commit_delay with
# commit_siblings is the same idea). Without it, eight WebDAV clients split into two groups of ~4 that
# take turns, each writing while the other's clients are away for their answers, and every PUT
# waits for a commit's fsync of its own group of four instead of eight. No wait for a PUT that
# arrives alone, and the expectation falls back to what actually came at the next group.
_GATHER_SECONDS = 0.002


def _one_per_name(pending: list[_Put]) -> tuple[list[_Put], list[_Put]]:
    """(a group to write now, what waits for the next one): two PUTs of one name are written one after
    the other, the second seeing the first's item, never in one group."""
    batch: list[_Put] = []
    later: list[_Put] = []
    names: set[tuple[int, str]] = set()
    for job in pending:
        key = (job.collection_id, job.name)
        if key in names:
            later.append(job)
        else:
            names.add(key)
            batch.append(job)
    return batch, later


class ItemsMixin(StoreBase):
    def put_item(
        self,
        collection_id: int,
        name: str,
        body: bytes | BinaryIO | Iterable[bytes],
        content_type: str,
        actor: int | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
        max_size: int | None = None,
        index: ItemIndex | None = None,
        claim: WriteClaim | None = None,
    ) -> tuple[Item, bool]:
        """Create or replace an item; returns (item, created).

        ``if_match`` is an ETag the current item must have; ``if_none_match`` means
        the item must not exist yet (HTTP ``If-None-Match: *``). With a ``claim`` (a
        WebDAV write) the locks on its path are checked again in the transaction
        (:class:`~kantoor.storage.locks.WriteClaim`); a conflict raises LockConflict.

        Concurrent calls in this process share a write transaction (group commit, see
        :meth:`_put_group`); each returns once its item is committed.
        """
        job = self._prepare_put(collection_id, name, body, content_type, actor, if_match, if_none_match,
                                max_size, index, claim)
        if job.index.ical_uid:
            # A calendar object or contact: its UID is checked against the collection's other items,
            # which a group writes only at its end; such a PUT is written alone, as it always was.
            with self.write() as s:
                return self._put_one(s, job)
        return self._run_put(job)

    def _prepare_put(self, collection_id: int, name: str, body: bytes | BinaryIO | Iterable[bytes],
                     content_type: str, actor: int | None = None, if_match: str | None = None,
                     if_none_match: bool = False, max_size: int | None = None, index: ItemIndex | None = None,
                     claim: WriteClaim | None = None) -> _Put:
        """A PUT ready for a write transaction: its name checked, its body stored and indexed."""
        validate_item_name(name)
        stored, sha, data = self._store_body(body, max_size)
        if index is None:
            if data is None and stored.size <= 1024 * 1024 and content_type.startswith(("text/", "message/")):
                data = self.blobs.read(sha)
            index = index_for(content_type, data) if data is not None else ItemIndex()
        return _Put(collection_id, name, stored, sha, content_type, index, actor, if_match, if_none_match, claim)

    def _put_one(self, s: Session, job: _Put) -> tuple[Item, bool]:
        """put_item's write of one item in the caller's write transaction."""
        name = job.name
        coll, existing = self._locked_collection_and_item(s, job.collection_id, name)
        if job.claim is not None:
            check_write_claim(s, job.claim, creating=existing is None, is_sqlite=self._is_sqlite)
        self._check_put(s, job, coll, existing)
        index = job.index
        if index.ical_uid and coll.kind in ("calendar", "addressbook"):
            clash = s.scalar(_UID_CLASH, {"collection": coll.id, "uid": index.ical_uid, "name": name})
            if clash is not None:
                raise AlreadyExists(f"UID {index.ical_uid} is already used by {clash}")
        delta = job.stored.size - (existing.size if existing else 0)
        self.quota.reserve(s, coll.owner_id, TOOL_OF_KIND[coll.kind], delta)
        if existing is not None and existing.blob_sha256:
            self._release_blobs(s, select(Item.blob_sha256).where(Item.id == existing.id))
        # A new item, or the new values of an existing one: kept out of the session (see _ITEMS above).
        item = Item(collection_id=coll.id, name=name, created_at=utcnow())
        self._apply_body(s, item, job.stored, job.sha, job.content_type, index)
        self._fault("before_commit")
        item.modseq = self._record_change(s, coll, name, existing.uid if existing else None,
                                          "created" if existing is None else "modified")
        self._write_collection_bump(s, coll)
        if existing is not None:
            values = {key: item.__dict__[key] for key in _ITEM_COLUMNS
                      if key in item.__dict__ and key not in ("collection_id", "name", "created_at")}
            s.connection().execute(_UPDATE_ITEM, {_ITEM_COLUMNS[k]: v for k, v in values.items()}
                                   | {"item_pk": existing.id})
            # ``existing`` is detached (loaded_detached): its loaded state is its __dict__.
            existing.__dict__.update(values)
            return existing, False
        insert_detached(s, item)
        return item, True

    def _check_put(self, s: Session, job: _Put, coll: Collection, existing: Item | None) -> None:
        """The preconditions and the right a PUT needs (``bind`` for a new item, ``write`` to replace one)."""
        if existing is None:
            if job.if_match is not None:
                raise PreconditionFailed(f"{job.name} does not exist")
            self.access.authorize(s, job.actor, "bind", coll)
        else:
            if job.if_none_match:
                raise PreconditionFailed(f"{job.name} exists")
            if job.if_match is not None and job.if_match != existing.etag:
                raise PreconditionFailed(f"{job.name} has changed")
            self.access.authorize(s, job.actor, "write", coll, existing)

    # ------------------------------------------------------------------ group commit of PUTs
    def _put_group(self) -> GroupCommit[_Put]:
        group = self.__dict__.get("_puts")
        if group is None:
            group = self.__dict__.setdefault("_puts", GroupCommit(  # atomic: one per Store
                self._writer_turn, self._write_put_group, self._write_put, gather_seconds=_GATHER_SECONDS,
                expect_recent=True, pick=_one_per_name))
        return group

    def _run_put(self, job: _Put) -> tuple[Item, bool]:
        """Write ``job`` together with the PUTs waiting at the same time (group commit); its result once
        committed."""
        self.end_shared_read()  # what this thread reads after returning must see the PUT
        return self._put_group().run(job)

    def _write_put_group(self, batch: list[_Put]) -> list[tuple[Item, bool]]:
        """The PUTs of ``batch`` in ONE write transaction: BEGIN, the collection's lock and modseq update, the
        quota update, the commit and its fsync are paid once per group (with eight WebDAV clients they were
        most of a small PUT's write). Any failure: the group commit writes each again alone."""
        with self.write() as s:
            return self._put_together(s, batch)

    def _write_put(self, job: _Put) -> tuple[Item, bool]:
        with self.write() as s:
            return self._put_one(s, job)

    def _put_together(self, s: Session, jobs: list[_Put]) -> list[tuple[Item, bool]]:
        """The rows of several PUTs (at most one per collection and name) in the caller's write transaction:
        what :meth:`_put_one` writes for each in turn, with one statement per table for all of them."""
        connection = s.connection()
        colls: dict[int, Collection] = {}
        for collection_id in sorted({job.collection_id for job in jobs}):  # a fixed lock order (PostgreSQL)
            row = connection.execute(_COLLECTION_ROW if self._is_sqlite else _COLLECTION_ROW_FOR_UPDATE,
                                     {"collection": collection_id}).first()
            if row is None:
                raise NotFound(f"no collection {collection_id}")
            colls[collection_id] = loaded_detached(COLLECTION_COLUMNS, row)
        # Read after the collections are locked: on PostgreSQL the rows a writer before us committed.
        existing: dict[tuple[int, str], Item] = {}
        for collection_id in colls:
            names = [job.name for job in jobs if job.collection_id == collection_id]
            params: dict[str, object] = {f"n{n}": name for n, name in enumerate(names)}
            params["collection"] = collection_id
            for row in connection.execute(_items_named(len(names)), params):
                item = loaded_detached(ITEM_COLUMNS, row)
                existing[(collection_id, item.name)] = item
        olds = [existing.get((job.collection_id, job.name)) for job in jobs]
        claims = [(job.claim, old is None) for job, old in zip(jobs, olds, strict=True) if job.claim is not None]
        if claims:
            check_write_claims(s, claims, is_sqlite=self._is_sqlite)
        # One reservation per owner for the whole group: its shrinking PUTs count first, which is one of
        # the orders the concurrent PUTs could have had; if it does not fit, each is tried alone.
        deltas: dict[tuple[int, str], int] = {}
        for job, old in zip(jobs, olds, strict=True):
            coll = colls[job.collection_id]
            if job.index.ical_uid and coll.kind in ("calendar", "addressbook"):
                raise ValueError("a UID is checked in a write of its own")
            self._check_put(s, job, coll, old)
            key = (coll.owner_id, TOOL_OF_KIND[coll.kind])
            deltas[key] = deltas.get(key, 0) + job.stored.size - (old.size if old else 0)
        for (owner_id, tool), delta in deltas.items():
            self.quota.reserve(s, owner_id, tool, delta)
        replaced = [old.id for old in olds if old is not None and old.blob_sha256]
        if replaced:
            self._release_blobs(s, select(Item.blob_sha256).where(Item.id.in_(replaced)))
        self._reference_blobs(s, [job.stored for job in jobs])
        now = utcnow()
        changes: list[dict[str, object]] = []
        updates: list[dict[str, object]] = []
        new: list[Item] = []
        results: list[tuple[Item, bool]] = []
        for job, old in zip(jobs, olds, strict=True):
            coll = colls[job.collection_id]
            coll.modseq += 1
            columns = body_columns(job.stored, job.sha, job.content_type, job.index)
            columns["modseq"] = coll.modseq
            kind = "created" if old is None else "modified"
            uid = old.uid if old is not None else None
            changes.append({"collection_id": coll.id, "modseq": coll.modseq, "item_name": job.name,
                            "item_uid": uid, "kind": kind})
            self._announce_change(s, coll, kind, coll.modseq, job.name, uid)
            if old is None:
                # The values go into a bare Item's __dict__ (committed by _insert_new_items after the
                # INSERT), as a delivery's do, not through the instrumented attributes.
                item = Item()
                item.__dict__.update(columns, collection_id=coll.id, name=job.name, created_at=now)
                new.append(item)
                results.append((item, True))
            else:
                updates.append({_ITEM_COLUMNS[key]: value for key, value in columns.items()} | {"item_pk": old.id})
                old.__dict__.update(columns)
                results.append((old, False))
        self._fault("before_commit")
        connection.execute(INSERT_CHANGE, changes)
        for coll in colls.values():
            coll.updated_at = now
            self._write_collection_bump(s, coll)
        if updates:
            connection.execute(_UPDATE_ITEM, updates)
        if new:
            _insert_new_items(s, new)
        return results

    @staticmethod
    def _write_collection_bump(s: Session, coll: Collection) -> None:
        """Write the modseq and updated_at _record_change gave ``coll`` now, without an ORM flush of it."""
        s.connection().execute(_BUMP_COLLECTION, {"coll_pk": coll.id, "coll_modseq": coll.modseq,
                                                  "coll_updated_at": coll.updated_at})
        set_committed_value(coll, "modseq", coll.modseq)
        set_committed_value(coll, "updated_at", coll.updated_at)


    def _locked_collection_and_item(self, s: Session, collection_id: int, name: str) -> tuple[Collection, Item | None]:
        """The collection, locked for this write, and its item ``name`` if there is one (both detached:
        put_item writes their changed columns itself)."""
        connection = s.connection()
        if not self._is_sqlite:
            # PostgreSQL: lock the collection first, then look: a writer that held the lock
            # before us has committed by then, and the look-up sees its item (one joined
            # statement would read the item from the snapshot taken before the wait).
            row = connection.execute(_COLLECTION_ROW_FOR_UPDATE, {"collection": collection_id}).first()
            if row is None:
                raise NotFound(f"no collection {collection_id}")
            item_row = connection.execute(_ITEM_ROW, {"collection": collection_id, "name": name}).first()
            return (loaded_detached(COLLECTION_COLUMNS, row),
                    loaded_detached(ITEM_COLUMNS, item_row) if item_row is not None else None)
        # SQLite: BEGIN IMMEDIATE already holds the database's write lock, so one statement
        # reads both (a statement less in the serialised part of every PUT).
        row = connection.execute(_COLLECTION_WITH_ITEM, {"collection": collection_id, "name": name}).first()
        if row is None:
            raise NotFound(f"no collection {collection_id}")
        coll = loaded_detached(COLLECTION_COLUMNS, row[:_N_COLLECTION])
        if row[_ITEM_ID_AT] is None:
            return coll, None
        return coll, loaded_detached(ITEM_COLUMNS, row[_N_COLLECTION:])

    def get_item(self, collection_id: int, name: str, actor: int | None = None) -> Item:
        with self.read() as s:
            item = s.scalar(_ITEM_NAMED, {"collection": collection_id, "name": name})
            coll = s.get(Collection, collection_id)
            if item is None or coll is None:
                raise NotFound(f"no item {name}")
            self.access.authorize(s, actor, "read", coll, item)
            return item

    def list_items(self, collection_id: int, actor: int | None = None) -> list[Item]:
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            self.access.authorize(s, actor, "read", coll)
            return list(s.scalars(select(Item).where(Item.collection_id == collection_id).order_by(Item.name)))

    def read_body(self, item: Item) -> bytes:
        """The bytes of an item the caller already got through an authorized read."""
        if item.inline_body is not None:
            return item.inline_body
        if item.blob_sha256 is None:
            return b""
        return self.blobs.read(item.blob_sha256)

    def open_body(self, item: Item) -> BinaryIO:
        import io

        if item.inline_body is not None or item.blob_sha256 is None:
            return io.BytesIO(item.inline_body or b"")
        return self.blobs.open(item.blob_sha256)

    def delete_item(self, collection_id: int, name: str, actor: int | None = None, if_match: str | None = None) -> None:
        with self.write() as s:
            coll = self._locked_collection(s, collection_id)
            item = s.scalar(_ITEM_NAMED, {"collection": coll.id, "name": name})
            if item is None:
                raise NotFound(f"no item {name}")
            self.access.authorize(s, actor, "write", coll, item)
            if if_match is not None and if_match != item.etag:
                raise PreconditionFailed(f"{name} has changed")
            self._remove_item(s, coll, item)

    def _remove_item(self, s: Session, coll: Collection, item: Item) -> None:
        if item.blob_sha256:
            self._release_blobs(s, select(Item.blob_sha256).where(Item.id == item.id))
        self.quota.reserve(s, coll.owner_id, TOOL_OF_KIND[coll.kind], -item.size)
        s.execute(delete(Grant).where(Grant.item_id == item.id))
        s.delete(item)
        self._record_change(s, coll, item.name, item.uid, "deleted")

    def changes_since(self, collection_id: int, modseq: int, actor: int | None = None) -> list[Change]:
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            self.access.authorize(s, actor, "read", coll)
            return list(s.scalars(select(Change).where(
                Change.collection_id == collection_id, Change.modseq > modseq).order_by(Change.modseq)))

