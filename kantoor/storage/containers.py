"""Collections: mailboxes, calendars, address books and drive folders."""

from __future__ import annotations

import time

from sqlalchemy import delete, func, select, update

from kantoor.storage.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
)
from kantoor.storage.models import (
    Change,
    Collection,
    Grant,
    Item,
    utcnow,
)
from kantoor.storage.names import TOOL_OF_KIND
from kantoor.storage.transactions import StoreBase


class ContainersMixin(StoreBase):
    # ------------------------------------------------------------------ collections
    def get_collection(self, collection_id: int) -> Collection:
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            return coll

    def find_collection(self, owner_id: int, kind: str, path: str, actor: int | None = None) -> Collection:
        """The collection at ``path``; raises NotFound, or PermissionDenied without ``read``."""
        with self.read() as s:
            coll = s.scalar(select(Collection).where(
                Collection.owner_id == owner_id, Collection.kind == kind, Collection.path == path))
            if coll is None:
                raise NotFound(f"no {kind} {path!r}")
            self.access.authorize(s, actor, "read", coll)
            return coll

    def list_collections(self, owner_id: int, kind: str, actor: int | None = None,
                         parent_id: int | None = None, right: str = "read") -> list[Collection]:
        """The owner's collections of ``kind`` that ``actor`` holds ``right`` on."""
        with self.read() as s:
            query = select(Collection).where(Collection.owner_id == owner_id, Collection.kind == kind)
            if parent_id is not None:
                query = query.where(Collection.parent_id == parent_id)
            result = []
            for coll in s.scalars(query.order_by(Collection.path)):
                try:
                    self.access.authorize(s, actor, right, coll)
                except PermissionDenied:
                    continue
                result.append(coll)
            return result

    def create_collection(self, owner_id: int, kind: str, path: str, actor: int | None = None,
                          display_name: str = "", components: str = "", description: str = "",
                          color: str = "", special_use: str = "") -> Collection:
        if kind not in TOOL_OF_KIND:
            raise ValueError(f"unknown collection kind {kind!r}")
        path = path.strip("/")
        with self.write() as s:
            parent = None
            if "/" in path or (kind == "folder" and path):
                parent_path = path.rsplit("/", 1)[0] if "/" in path else ""
                parent = s.scalar(select(Collection).where(
                    Collection.owner_id == owner_id, Collection.kind == kind, Collection.path == parent_path))
                if parent is None:
                    raise NotFound(f"no parent {parent_path!r}")
                self.access.authorize(s, actor, "write", parent)
            else:
                self.access.authorize_owner(s, actor, owner_id)
            if s.scalar(select(Collection.id).where(
                    Collection.owner_id == owner_id, Collection.kind == kind, Collection.path == path)):
                raise AlreadyExists(f"{kind} {path!r} exists")
            coll = Collection(owner_id=owner_id, kind=kind, path=path, parent_id=parent.id if parent else None,
                              display_name=display_name or path.rsplit("/", 1)[-1], components=components,
                              description=description, color=color, special_use=special_use,
                              uidvalidity=int(time.time()))
            s.add(coll)
            s.flush()
            if parent is not None:
                self._record_change(s, parent, coll.path.rsplit("/", 1)[-1] + "/", None, "created")
            return coll

    def delete_collection(self, collection_id: int, actor: int | None = None) -> None:
        """Delete a collection with everything below it, giving the usage back."""
        with self.write() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            if coll.parent_id is not None:
                parent = s.get(Collection, coll.parent_id)
                assert parent is not None
                self.access.authorize(s, actor, "write", parent)
            else:
                self.access.authorize_owner(s, actor, coll.owner_id)
            prefix = coll.path + "/"
            ids = [coll.id] + list(s.scalars(select(Collection.id).where(
                Collection.owner_id == coll.owner_id, Collection.kind == coll.kind,
                Collection.path.startswith(prefix, autoescape=True))))
            freed = int(s.scalar(select(func.coalesce(func.sum(Item.size), 0)).where(Item.collection_id.in_(ids))) or 0)
            self._release_blobs(s, select(Item.blob_sha256).where(
                Item.collection_id.in_(ids), Item.blob_sha256.is_not(None)))
            s.execute(delete(Grant).where(Grant.item_id.in_(select(Item.id).where(Item.collection_id.in_(ids)))))
            s.execute(delete(Grant).where(Grant.collection_id.in_(ids)))
            s.execute(delete(Change).where(Change.collection_id.in_(ids)))
            s.execute(delete(Item).where(Item.collection_id.in_(ids)))
            s.execute(update(Collection).where(Collection.id.in_(ids)).values(parent_id=None))
            s.execute(delete(Collection).where(Collection.id.in_(ids)))
            if freed:
                self.quota.reserve(s, coll.owner_id, TOOL_OF_KIND[coll.kind], -freed)
            if coll.parent_id is not None:
                parent = s.get(Collection, coll.parent_id)
                if parent is not None:
                    self._record_change(s, parent, coll.path.rsplit("/", 1)[-1] + "/", None, "deleted")


    # ------------------------------------------------------------------ collection properties
    # (added for CalDAV/CardDAV PROPPATCH; usable by any frontend that renames or recolours)
    _COLLECTION_PROPERTIES = frozenset({"display_name", "description", "color", "components"})

    def update_collection(self, collection_id: int, actor: int | None = None, **fields: str) -> Collection:
        """Change a collection's display properties; needs ``write`` on it."""
        unknown = set(fields) - self._COLLECTION_PROPERTIES
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        with self.write() as s:
            coll = self._locked_collection(s, collection_id)
            self.access.authorize(s, actor, "write", coll)
            for key, value in fields.items():
                setattr(coll, key, value)
            coll.updated_at = utcnow()
            s.flush()
            return coll

