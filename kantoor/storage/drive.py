"""The document drive's own Store operations.

- moves inside a drive (files and folders renamed in place, ids kept),
- the rights an actor holds on a folder or file (PROPPATCH, LOCK decide with them),
- what a user's mount point shows: their groups' drives, what others shared with them,
- the Drop folder's put-without-overwriting (a taken name gets a new unique one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from kantoor.storage.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from kantoor.storage.indexing import ItemIndex
from kantoor.storage.models import (
    Account,
    Collection,
    Grant,
    Group,
    Item,
    Membership,
    utcnow,
)
from kantoor.storage.names import TOOL_OF_KIND, validate_item_name
from kantoor.storage.transactions import StoreBase

# The rights vocabulary of kantoor.auth.rights (storage sits below auth, so it is spelled here too).


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


    # ------------------------------------------------------------------ rights on drive resources
    def find_folder(self, owner_id: int, path: str, actor: int | None = None, right: str = "read") -> Collection:
        """The owner's drive folder at ``path`` if ``actor`` holds ``right`` on it (``bind``: a Drop folder
        they may put into without seeing it); NotFound otherwise, so another's tree stays invisible."""
        with self.read() as s:
            coll = s.scalar(select(Collection).where(
                Collection.owner_id == owner_id, Collection.kind == "folder", Collection.path == path))
            if coll is None:
                raise NotFound(f"no folder {path!r}")
            try:
                self.access.authorize(s, actor, right, coll)
            except PermissionDenied:
                raise NotFound(f"no folder {path!r}") from None
            return coll

    # ------------------------------------------------------------------ what a user's mount point shows
    def drive_groups(self, actor: int) -> list[tuple[str, int]]:
        """(group name, group principal id) of every group the account ``actor`` belongs to, by name."""
        with self.read() as s:
            return [(name, pid) for name, pid in s.execute(
                select(Group.name, Group.principal_id).join(Membership, Membership.group_id == Group.id)
                .join(Account, Account.id == Membership.account_id)
                .where(Account.principal_id == actor).order_by(Group.name))]

    def drive_plan(self, owner_id: int) -> str:
        """The plan whose documents capacity a drive counts against (a group's: its administrator's)."""
        with self.read() as s:
            plan = s.scalar(select(Account.plan).where(Account.principal_id == owner_id))
            if plan is None:
                plan = s.scalar(select(Account.plan).join(Group, Group.admin_id == Account.id)
                                .where(Group.principal_id == owner_id))
            if plan is None:
                raise NotFound(f"principal {owner_id} owns no drive")
            return plan

    def shared_with_me(self, actor: int) -> list[SharedEntry]:
        """Drive folders and files others shared (read or more) with ``actor`` or with a group of theirs.

        Computed from the grants at each call, so a revoked share is gone at once.
        """
        with self.read() as s:
            account_id = s.scalar(select(Account.id).where(Account.principal_id == actor))
            if account_id is None:
                return []
            grantees = [actor, *s.scalars(select(Group.principal_id).join(Membership, Membership.group_id == Group.id)
                                          .where(Membership.account_id == account_id))]
            best: dict[tuple[int, int | None], SharedEntry] = {}
            grants = s.scalars(select(Grant).where(Grant.grantee_id.in_(grantees),
                                                   Grant.right.in_(("read", "write", "admin"))))
            for grant in grants:
                item = s.get(Item, grant.item_id) if grant.item_id is not None else None
                coll = s.get(Collection, item.collection_id if item is not None else grant.collection_id)
                if coll is None or coll.kind != "folder" or coll.owner_id == actor:
                    continue
                key = (coll.id, item.id if item is not None else None)
                if key in best and SHARE_STRENGTH[best[key].right] >= SHARE_STRENGTH[grant.right]:
                    continue
                best[key] = SharedEntry(coll, item, self._owner_name(s, coll.owner_id), grant.right)
            return sorted(best.values(), key=lambda e: (e.name.lower(), e.owner_name, e.collection.id))

    @staticmethod
    def _owner_name(s: Session, owner_id: int) -> str:
        login = s.scalar(select(Account.login).where(Account.principal_id == owner_id))
        return login or s.scalar(select(Group.name).where(Group.principal_id == owner_id)) or str(owner_id)

    # ------------------------------------------------------------------ Drop folder
    def drop_item(self, collection_id: int, name: str, body: bytes | BinaryIO | Iterable[bytes], content_type: str,
                  actor: int | None = None, max_size: int | None = None) -> Item:
        """Add a new file to a folder the actor may ``bind`` into (a Drop folder) without replacing anything:
        if ``name`` is taken, the file gets the first free ``name (2).ext``, ``name (3).ext`` … instead."""
        validate_item_name(name)
        stored, sha, _data = self._store_body(body, max_size)
        with self.write() as s:
            coll = self._locked_collection(s, collection_id)
            self.access.authorize(s, actor, "bind", coll)
            taken = set(s.scalars(select(Item.name).where(Item.collection_id == coll.id,
                                                          Item.name.startswith(_stem(name), autoescape=True))))
            final = _free_name(name, taken)
            self.quota.reserve(s, coll.owner_id, TOOL_OF_KIND[coll.kind], stored.size)
            item = Item(collection_id=coll.id, name=final, created_at=utcnow())
            self._apply_body(s, item, stored, sha, content_type, ItemIndex())
            s.add(item)
            item.modseq = self._record_change(s, coll, final, None, "created")
            s.flush()
            return item


# Which share wins when a resource reaches a user through several grants.
SHARE_STRENGTH = {"read": 1, "write": 2, "admin": 3}


@dataclass
class SharedEntry:
    """A folder (``item`` None) or a single file shared with a user, as "Shared with me" lists it."""

    collection: Collection
    item: Item | None
    owner_name: str
    right: str

    @property
    def name(self) -> str:
        if self.item is not None:
            return self.item.name
        return self.collection.path.rsplit("/", 1)[-1] or self.owner_name


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def _free_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    stem = _stem(name)
    suffix = name[len(stem):]
    for n in range(2, len(taken) + 3):
        candidate = f"{stem} ({n}){suffix}"
        if candidate not in taken and len(candidate) <= 1024:
            return candidate
    raise AlreadyExists(f"no free name for {name}")
