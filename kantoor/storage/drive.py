"""Moves inside a drive: rename files and folders in place."""

from __future__ import annotations

from sqlalchemy import select

from kantoor.storage.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from kantoor.storage.models import (
    Collection,
    Item,
    utcnow,
)
from kantoor.storage.names import validate_item_name
from kantoor.storage.transactions import StoreBase


class DriveMixin(StoreBase):
    # ------------------------------------------------------------------ moves inside a drive
    # (added for the WebDAV drive: MOVE renames in place instead of copying every
    # byte, so moving a large file never needs free capacity for a second copy)
    def move_item(self, collection_id: int, name: str, dest_collection_id: int, dest_name: str,
                  actor: int | None = None, overwrite: bool = True) -> Item:
        """Move or rename a drive file; the item (id, body, grants, created_at) stays the same.

        Needs ``write`` on the item and ``bind`` on the destination (plus ``write`` on a
        destination item it replaces, which only happens with ``overwrite``). Source and
        destination must be folders of one owner, so usage does not change.
        """
        validate_item_name(dest_name)
        with self.write() as s:
            ids = sorted({collection_id, dest_collection_id})  # fixed lock order: no deadlock
            locked = {cid: self._locked_collection(s, cid) for cid in ids}
            src, dest = locked[collection_id], locked[dest_collection_id]
            if src.kind != "folder" or dest.kind != "folder" or src.owner_id != dest.owner_id:
                raise ValueError("files move only between folders of one owner")
            item = s.scalar(select(Item).where(Item.collection_id == src.id, Item.name == name))
            if item is None:
                raise NotFound(f"no item {name}")
            self.access.authorize(s, actor, "write", src, item)
            if src.id == dest.id and name == dest_name:
                return item
            existing = s.scalar(select(Item).where(Item.collection_id == dest.id, Item.name == dest_name))
            if existing is not None:
                if not overwrite:
                    raise PreconditionFailed(f"{dest_name} exists")
                self.access.authorize(s, actor, "write", dest, existing)
                self._remove_item(s, dest, existing)
                s.flush()
            else:
                self.access.authorize(s, actor, "bind", dest)
            self._record_change(s, src, item.name, item.uid, "deleted")
            item.collection_id = dest.id
            item.name = dest_name
            item.modseq = self._record_change(s, dest, dest_name, item.uid, "created")
            s.flush()
            return item

    def move_collection(self, collection_id: int, dest_parent_id: int, dest_name: str,
                        actor: int | None = None) -> Collection:
        """Move or rename a folder with everything below it (paths rewritten, ids kept).

        Needs ``write`` on the old and the new parent; refuses a drive root, a move into
        its own subtree, another owner's tree, and an existing destination (AlreadyExists).
        """
        validate_item_name(dest_name)
        with self.write() as s:
            coll = s.get(Collection, collection_id)
            parent = s.get(Collection, dest_parent_id)
            if coll is None or parent is None:
                raise NotFound("no such folder")
            if coll.kind != "folder" or parent.kind != "folder" or coll.owner_id != parent.owner_id:
                raise ValueError("folders move only inside one owner's drive")
            if coll.parent_id is None:
                raise PermissionDenied("the root of a drive cannot be moved", "write")
            old_parent = s.get(Collection, coll.parent_id)
            assert old_parent is not None
            if parent.id == coll.id or parent.path.startswith(coll.path + "/"):
                raise ValueError("a folder cannot move into itself")
            self.access.authorize(s, actor, "write", old_parent)
            self.access.authorize(s, actor, "write", parent)
            new_path = f"{parent.path}/{dest_name}" if parent.path else dest_name
            if new_path == coll.path:
                return coll
            if s.scalar(select(Collection.id).where(
                    Collection.owner_id == coll.owner_id, Collection.kind == coll.kind, Collection.path == new_path)):
                raise AlreadyExists(f"folder {new_path!r} exists")
            old_name = coll.path.rsplit("/", 1)[-1]
            prefix = coll.path + "/"
            for below in s.scalars(select(Collection).where(
                    Collection.owner_id == coll.owner_id, Collection.kind == coll.kind,
                    Collection.path.startswith(prefix, autoescape=True))):
                below.path = new_path + "/" + below.path[len(prefix):]
            if coll.display_name == old_name:
                coll.display_name = dest_name
            coll.path = new_path
            coll.parent_id = parent.id
            coll.updated_at = utcnow()
            self._record_change(s, old_parent, old_name + "/", None, "deleted")
            self._record_change(s, parent, dest_name + "/", None, "created")
            s.flush()
            return coll

