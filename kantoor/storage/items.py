"""Items in collections: create/replace with preconditions, read, delete, change log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from sqlalchemy import and_, bindparam, delete, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from kantoor.storage.errors import (
    AlreadyExists,
    NotFound,
    PreconditionFailed,
)
from kantoor.storage.indexing import ItemIndex, index_for
from kantoor.storage.locks import WriteClaim, check_write_claim
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
from kantoor.storage.transactions import StoreBase, insert_detached

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
        """
        validate_item_name(name)
        stored, sha, data = self._store_body(body, max_size)
        if index is None:
            if data is None and stored.size <= 1024 * 1024 and content_type.startswith(("text/", "message/")):
                data = self.blobs.read(sha)
            index = index_for(content_type, data) if data is not None else ItemIndex()
        with self.write() as s:
            coll, existing = self._locked_collection_and_item(s, collection_id, name)
            if claim is not None:
                check_write_claim(s, claim, creating=existing is None, is_sqlite=self._is_sqlite)
            if existing is None:
                if if_match is not None:
                    raise PreconditionFailed(f"{name} does not exist")
                self.access.authorize(s, actor, "bind", coll)
            else:
                if if_none_match:
                    raise PreconditionFailed(f"{name} exists")
                if if_match is not None and if_match != existing.etag:
                    raise PreconditionFailed(f"{name} has changed")
                self.access.authorize(s, actor, "write", coll, existing)
            if index.ical_uid and coll.kind in ("calendar", "addressbook"):
                clash = s.scalar(_UID_CLASH, {"collection": coll.id, "uid": index.ical_uid, "name": name})
                if clash is not None:
                    raise AlreadyExists(f"UID {index.ical_uid} is already used by {clash}")
            delta = stored.size - (existing.size if existing else 0)
            self.quota.reserve(s, coll.owner_id, TOOL_OF_KIND[coll.kind], delta)
            if existing is not None and existing.blob_sha256:
                self._release_blobs(s, select(Item.blob_sha256).where(Item.id == existing.id))
            # A new item, or the new values of an existing one: kept out of the session (see _ITEMS above).
            item = Item(collection_id=coll.id, name=name, created_at=utcnow())
            self._apply_body(s, item, stored, sha, content_type, index)
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

