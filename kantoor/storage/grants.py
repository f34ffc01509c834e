"""Grants: sharing a collection or a single item with an account or a group."""

from __future__ import annotations

from sqlalchemy import delete, select

from kantoor.storage.errors import NotFound, PermissionDenied
from kantoor.storage.models import (
    Collection,
    Grant,
    Item,
)
from kantoor.storage.transactions import StoreBase, same_or_null


class GrantsMixin(StoreBase):
    # ------------------------------------------------------------------ grants
    def grant(self, collection_id: int | None, item_id: int | None, grantee_id: int, right: str,
              actor: int | None = None) -> None:
        if (collection_id is None) == (item_id is None):
            raise ValueError("grant either a collection or an item")
        if right not in ("freebusy", "read", "write", "bind", "admin"):
            raise ValueError(f"unknown right {right!r}")
        with self.write() as s:
            if item_id is not None:
                item = s.get(Item, item_id)
                if item is None:
                    raise NotFound(f"no item {item_id}")
                coll = s.get(Collection, item.collection_id)
            else:
                item = None
                coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            self.access.authorize(s, actor, "admin", coll, item)
            existing = s.scalar(select(Grant).where(
                same_or_null(Grant.collection_id, collection_id), same_or_null(Grant.item_id, item_id),
                Grant.grantee_id == grantee_id))
            if existing is not None:
                existing.right = right
            else:
                s.add(Grant(collection_id=collection_id, item_id=item_id, grantee_id=grantee_id, right=right))

    def revoke(self, collection_id: int | None, item_id: int | None, grantee_id: int, actor: int | None = None) -> None:
        with self.write() as s:
            coll = s.get(Collection, collection_id) if collection_id is not None else None
            item = s.get(Item, item_id) if item_id is not None else None
            if item is not None:
                coll = s.get(Collection, item.collection_id)
            if coll is None:
                raise NotFound("no such resource")
            self.access.authorize(s, actor, "admin", coll, item)
            s.execute(delete(Grant).where(
                Grant.grantee_id == grantee_id, same_or_null(Grant.collection_id, collection_id),
                same_or_null(Grant.item_id, item_id)))

    def rights_held(self, collection_id: int, item_name: str | None = None,
                     actor: int | None = None) -> frozenset[str]:
        """Every right (``freebusy read write bind admin``) ``actor`` holds on a collection or one of its items
        (DAV current-user-privilege-set, IMAP MYRIGHTS, drive checks)."""
        with self.read() as s:
            coll, item = self._collection_and_item(s, collection_id, item_name)
            held = set()
            for right in ("freebusy", "read", "write", "bind", "admin"):
                try:
                    self.access.authorize(s, actor, right, coll, item)
                except PermissionDenied:
                    continue
                held.add(right)
            return frozenset(held)
