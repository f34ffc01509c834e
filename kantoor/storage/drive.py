"""The document drive's own Store operations.

- moves inside a drive (files and folders renamed in place, ids kept),
- the rights an actor holds on a folder or file (PROPPATCH, LOCK decide with them),
- what a user's mount point shows: their groups' drives, what others shared with them,
- the Drop folder's put-without-overwriting (a taken name gets a new unique one).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import Select, and_, bindparam, exists, select
from sqlalchemy.orm import Session, load_only

from kantoor.storage import raw_statements as raw
from kantoor.storage.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from kantoor.storage.indexing import ItemIndex
from kantoor.storage.items import COLLECTION_COLUMNS, ITEM_COLUMNS, loaded_detached
from kantoor.storage.models import (
    Account,
    Collection,
    DeadProperty,
    Grant,
    Group,
    Item,
    Lock,
    Membership,
    utcnow,
)
from kantoor.storage.names import TOOL_OF_KIND, validate_item_name
from kantoor.storage.transactions import StoreBase

# The hot path of every drive request, built once: SQLAlchemy caches the compiled SQL
# of a statement object, but building select(...).where(...) anew costs ~0.1 ms a time.
_FOLDERS_AT = select(Collection).where(Collection.owner_id == bindparam("owner"), Collection.kind == "folder",
                                       Collection.path.in_(bindparam("paths", expanding=True)))
_ITEM_NAMED = select(Item).where(Item.collection_id == bindparam("collection"), Item.name == bindparam("name"))
# What a URL path names, in ONE statement: the folder at the path and/or its parent folder,
# the parent joined with the file of that name (a GET is this statement and nothing else).
# It runs as a Core statement on plain columns and the rows become detached ORM objects
# (``loaded_detached``): the ORM's execution and row loading of the same SELECT cost as much again as
# the statement (171 vs 120 µs of a 270 µs drive GET, bench/webdav.py). The two candidate
# paths are two plain parameters (an expanding IN is re-rendered at every execution).
_ITEMS_TABLE = Item.__table__
_PLACE = (select(*COLLECTION_COLUMNS.columns, *ITEM_COLUMNS.columns)
          .select_from(Collection.__table__.outerjoin(_ITEMS_TABLE, and_(
              _ITEMS_TABLE.c.collection_id == Collection.__table__.c.id,
              Collection.__table__.c.path == bindparam("parent_path"),
              _ITEMS_TABLE.c.name == bindparam("name"))))
          .where(Collection.__table__.c.owner_id == bindparam("owner"), Collection.__table__.c.kind == "folder",
                 Collection.__table__.c.path.in_([bindparam("path"), bindparam("other_path")])))
# The same, and whether the database holds any live WebDAV lock at all: a write's lock checks
# (one to three queries) are skipped when it holds none, which is almost always.
_PLACE_AND_LOCKS = _PLACE.add_columns(exists().where(Lock.expires_at > bindparam("now")))
_N_COLLECTION = len(COLLECTION_COLUMNS)
_N_PLACE = _N_COLLECTION + len(ITEM_COLUMNS)
_PATH_INDEX = COLLECTION_COLUMNS.keys.index("path")
_ITEM_ID_INDEX = ITEM_COLUMNS.keys.index("id")
# A folder listing (PROPFIND Depth 1) needs what describes a file, not its body or its
# calendar/contact/mail index columns: loading 1,000 rows whole took a third of the request.
_LISTED_ITEMS = (select(Item).options(load_only(Item.id, Item.collection_id, Item.name, Item.size, Item.etag,
                                                Item.content_type, Item.created_at, Item.updated_at,
                                                Item.blob_sha256, Item.modseq))
                 .where(Item.collection_id == bindparam("collection")).order_by(Item.name))
_CHILD_FOLDERS = (select(Collection).where(Collection.parent_id == bindparam("collection"), Collection.kind == "folder")
                  .order_by(Collection.path))
_ITEM_PROPERTIES = (select(Item.name, DeadProperty.name, DeadProperty.value)
                    .join(DeadProperty, DeadProperty.item_id == Item.id)
                    .where(Item.collection_id == bindparam("collection")))


class _SessionOnDemand:
    """Stands in for a Session that is made on first use: the ACL engine reads nothing for an owner
    in their own drive, and making and closing an unused Session was 15 of the 75 µs this look-up
    took for a small GET (timed in-process)."""

    __slots__ = ("_factory", "_session")

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self._session: Session | None = None

    def __getattr__(self, name: str) -> Any:
        session = self._session
        if session is None:
            session = self._session = self._factory()
        return getattr(session, name)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


@dataclass
class FolderListing:
    """A folder's members for a listing: sub-folders the actor may read, files (without their
    bodies: read those through a full look-up), and the files' dead properties by name."""

    folders: list[Collection]
    items: list[Item]
    properties: dict[str, dict[str, str]]


@dataclass
class DrivePlace:
    """What a path in a drive names: a folder, a file (its folder and item), or nothing.

    For a path that names nothing, ``parent`` is still its folder when that exists
    (so a PUT or MKCOL needs no second look-up of it). ``locks_exist`` is None unless
    asked for: then False if no live lock was in the database when the path was read.
    """

    folder: Collection | None = None
    parent: Collection | None = None
    item: Item | None = None
    locks_exist: bool | None = None


class DriveMixin(StoreBase):
    # ------------------------------------------------------------------ resolving a URL path
    def resolve_drive_path(self, owner_id: int, path: str, actor: int | None = None, *,
                           with_locks: bool = False, standalone: bool = False) -> DrivePlace:
        """The folder or file at ``path`` (``"a/b"``, ``""`` the root) of ``owner_id``'s drive, in one statement.

        Needs ``read`` on what it returns (PermissionDenied otherwise), exactly like
        ``find_collection`` followed by ``get_item``; the parent folder of a missing file
        is returned only if ``actor`` may read it. ``with_locks``: also tell whether any
        live lock exists (``DrivePlace.locks_exist``), read in the same snapshot.
        ``standalone``: the caller does not need this read to share the snapshot of the other reads
        of its request_scope() (a PUT: what it writes is decided again in its write transaction).
        """
        parent_path, _, name = path.rpartition("/")
        params = {"owner": owner_id, "path": path, "other_path": parent_path if path else path,
                  # The root has no parent: NULL matches no folder path.
                  "parent_path": parent_path if path else None, "name": name}
        if actor == owner_id and self._is_sqlite and (standalone or not self._in_request_scope()):
            # The owner reads their own drive (the ACL grants every right without a query) and
            # shares no session with other reads: the one statement needs no transaction.
            # One SELECT in SQLite's autocommit mode reads one consistent snapshot, as in a transaction of its
            # own; without the Session, the BEGIN and the ROLLBACK around it a drive GET costs half as much.
            if with_locks:
                rows = raw.read_values(self.engine, self._autocommit_place(_PLACE_AND_LOCKS),
                                       {**params, "now": utcnow()})
            else:
                rows = raw.read_values(self.engine, self._autocommit_place(_PLACE), params)
            # A session for the ACL engine only, should it need to read (for the owner it does not):
            # made, and connected, only if used.
            lazy = _SessionOnDemand(self._sessions)
            try:
                return self._place_of(path, rows, lazy, actor, with_locks)  # type: ignore[arg-type]
            finally:
                lazy.close()
        with self.read() as s:
            if with_locks:
                rows = s.connection().execute(_PLACE_AND_LOCKS, {**params, "now": utcnow()}).all()
            else:
                rows = s.connection().execute(_PLACE, params).all()
            return self._place_of(path, rows, s, actor, with_locks)

    def _autocommit_place(self, statement: Select) -> raw.RawStatement:
        """``statement`` compiled once for this Store's database (run by raw_statements.read_values)."""
        selects = self.__dict__.setdefault("_autocommit_selects", {})
        select_ = selects.get(statement)
        if select_ is None:
            select_ = selects[statement] = raw.RawStatement(statement, self.engine.dialect)
        return select_

    def _in_request_scope(self) -> bool:
        return threading.get_ident() in self._scopes

    def _place_of(self, path: str, rows: Sequence[Sequence[Any]], s: Session, actor: int | None,
                  with_locks: bool | None) -> DrivePlace:
        """resolve_drive_path's answer from the rows of _PLACE (or _PLACE_AND_LOCKS with ``with_locks``)."""
        locks_exist = bool(rows[0][_N_PLACE]) if with_locks and rows else None
        found = parent_row = None
        for row in rows:
            if row[_PATH_INDEX] == path:
                found = row
            elif path:
                parent_row = row
        if found is not None:
            folder = loaded_detached(COLLECTION_COLUMNS, found[:_N_COLLECTION])
            self.access.authorize(s, actor, "read", folder)
            return DrivePlace(folder=folder, locks_exist=locks_exist)
        if parent_row is None:
            return DrivePlace(locks_exist=locks_exist)
        parent = loaded_detached(COLLECTION_COLUMNS, parent_row[:_N_COLLECTION])
        self.access.authorize(s, actor, "read", parent)
        item = None
        if parent_row[_N_COLLECTION + _ITEM_ID_INDEX] is not None:
            item = loaded_detached(ITEM_COLUMNS, parent_row[_N_COLLECTION:_N_PLACE])
            self.access.authorize(s, actor, "read", parent, item)
        return DrivePlace(parent=parent, item=item, locks_exist=locks_exist)

    def list_drive_folder(self, collection_id: int, actor: int | None = None) -> FolderListing:
        """Everything a PROPFIND Depth 1 of a folder shows, in one session (``read`` on the folder needed)."""
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None or coll.kind != "folder":
                raise NotFound(f"no folder {collection_id}")
            self.access.authorize(s, actor, "read", coll)
            folders = []
            for child in s.scalars(_CHILD_FOLDERS, {"collection": coll.id}):
                try:
                    self.access.authorize(s, actor, "read", child)
                except PermissionDenied:
                    continue
                folders.append(child)
            items = list(s.scalars(_LISTED_ITEMS, {"collection": coll.id}))
            properties: dict[str, dict[str, str]] = {}
            for item_name, name, value in s.execute(_ITEM_PROPERTIES, {"collection": coll.id}):
                properties.setdefault(item_name, {})[name] = value
            return FolderListing(folders, items, properties)

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

    # ------------------------------------------------------------------ sharing by path (kantoor share …)
    def _drive_target(self, s: Session, owner_id: int, path: str) -> tuple[Collection, Item | None]:
        """The folder or file at ``path`` (``/Documents/report.odt``) of the owner's drive; NotFound otherwise."""
        path = path.strip("/")
        if not path:
            raise ValueError("share a folder or a file of the drive, not the whole drive")
        folders = {c.path: c for c in s.scalars(_FOLDERS_AT, {"owner": owner_id, "paths": [
            path, path.rsplit("/", 1)[0] if "/" in path else ""]})}
        if path in folders:
            return folders[path], None
        parent = folders.get(path.rsplit("/", 1)[0] if "/" in path else "")
        item = None if parent is None else s.scalar(
            _ITEM_NAMED, {"collection": parent.id, "name": path.rsplit("/", 1)[-1]})
        if parent is None or item is None:
            raise NotFound(f"no folder or file /{path} in the drive")
        return parent, item

    def _owner_group(self, s: Session, owner_id: int, group_name: str) -> Group:
        """A group the drive's owner belongs to (only those can be shared with)."""
        group = s.scalar(select(Group).where(Group.name == group_name))
        if group is None:
            raise NotFound(f"no group {group_name}")
        account_id = s.scalar(select(Account.id).where(Account.principal_id == owner_id))
        member = account_id is not None and (group.admin_id == account_id or s.get(
            Membership, (group.id, account_id)) is not None)
        if not member:
            raise PermissionDenied(f"the owner is not a member of the group {group_name}", "admin")
        return group

    def share_drive_path(self, owner_id: int, path: str, group_name: str, right: str) -> DriveShare:
        """Share a folder (with everything below it) or a single file with a group of the owner's,
        at ``read`` or ``write``; sharing it again with the same group changes the right."""
        if right not in ("read", "write"):
            raise ValueError(f"a share gives read or write, not {right!r}")
        with self.read() as s:
            coll, item = self._drive_target(s, owner_id, path)
            group = self._owner_group(s, owner_id, group_name)
        self.grant(None if item is not None else coll.id, item.id if item is not None else None,
                   group.principal_id, right, actor=owner_id)
        return DriveShare(_share_path(coll, item), group_name, right)

    def unshare_drive_path(self, owner_id: int, path: str, group_name: str) -> None:
        """Revoke a group's share of a folder or file; NotFound if there is none."""
        with self.read() as s:
            coll, item = self._drive_target(s, owner_id, path)
            group = s.scalar(select(Group).where(Group.name == group_name))
            if group is None:
                raise NotFound(f"no group {group_name}")
            shared = s.scalar(select(Grant.id).where(
                Grant.grantee_id == group.principal_id,
                Grant.item_id == item.id if item is not None else Grant.collection_id == coll.id))
            if shared is None:
                raise NotFound(f"{_share_path(coll, item)} is not shared with {group_name}")
        self.revoke(None if item is not None else coll.id, item.id if item is not None else None,
                    group.principal_id, actor=owner_id)

    def drive_shares(self, owner_id: int) -> list[DriveShare]:
        """Every share of the owner's drive folders and files, by path."""
        with self.read() as s:
            folder_grants = s.execute(
                select(Collection, Grant.grantee_id, Grant.right).join(Grant, Grant.collection_id == Collection.id)
                .where(Collection.owner_id == owner_id, Collection.kind == "folder"))
            file_grants = s.execute(
                select(Collection, Item, Grant.grantee_id, Grant.right).join(Item, Item.collection_id == Collection.id)
                .join(Grant, Grant.item_id == Item.id)
                .where(Collection.owner_id == owner_id, Collection.kind == "folder"))
            rows = [(coll, None, grantee, right) for coll, grantee, right in folder_grants]
            rows += list(file_grants)
            shares = [DriveShare(_share_path(coll, item), self._owner_name(s, grantee), right)
                      for coll, item, grantee, right in rows]
        return sorted(shares, key=lambda share: (share.path, share.group))

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


@dataclass
class DriveShare:
    """A share of a drive folder (``path`` ends with ``/``) or file with a group (or an account)."""

    path: str
    group: str
    right: str


def _share_path(coll: Collection, item: Item | None) -> str:
    folder = "/" + coll.path + ("/" if coll.path else "")
    return folder + item.name if item is not None else folder


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
