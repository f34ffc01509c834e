"""The drive's DAV resources: the ``/files/`` listing, folders (Store collections) and files (Store items),
and the virtual ``Groups/`` and ``Shared with me/`` folders of a mount point.

Dead properties are read and written through the Store per resource (a PROPPATCH
in one transaction); lock keys are the resource's place in its owner's drive.
Every Store call passes the request's principal as ``actor`` so the Store's ACL
engine decides rights; Store errors become HTTP statuses through
:func:`~kantoor.davserver.files.errors.store_errors`.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote

from wsgidav import util, xml_tools
from wsgidav.dav_error import (
    HTTP_CONFLICT,
    HTTP_FORBIDDEN,
    HTTP_INSUFFICIENT_STORAGE,
    HTTP_NOT_FOUND,
    DAVError,
)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection

from kantoor.davserver.files.context import ACCOUNT_KEY, DriveContext
from kantoor.davserver.files.errors import store_errors
from kantoor.davserver.files.upload import Upload
from kantoor.storage import AlreadyExists, NotFound, Store
from kantoor.storage.drive import SharedEntry
from kantoor.storage.models import Account, Collection, Item
from kantoor.storage.properties import MAX_PROPERTY_BYTES
from kantoor.storage.store import validate_item_name

if TYPE_CHECKING:
    from kantoor.davserver.files.provider import DriveProvider

HREF_SAFE = "/!*'(),$-_|.~@:+=;&"
# The folders every mount point shows besides the user's own files (not names of real folders there).
GROUPS = "Groups"
SHARED = "Shared with me"
RESERVED_NAMES = (GROUPS, SHARED)
# First segment of a lock key: "/~<owner principal id>/…" (never a login: logins contain "@").
LOCK_KEY_PREFIX = "/~"
# Where a PROPPATCH's changes are collected between wsgidav's dry run and the real run.
PROPPATCH_KEY = "kantoor.files.proppatch"
QUOTA_PROPERTIES = ("{DAV:}quota-used-bytes", "{DAV:}quota-available-bytes")
# Item.content_type is a String(200) column, Collection.path a String(1024) one.
MAX_CONTENT_TYPE = 200
MAX_FOLDER_PATH = 1024


def epoch_seconds(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands timestamps back naive; they are UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def folder_key(collection: Collection) -> str:
    """A folder's lock key: ``/~<owner principal>/<path in the owner's drive>`` (see get_ref_url)."""
    return f"{LOCK_KEY_PREFIX}{collection.owner_id}" + (f"/{collection.path}" if collection.path else "")


def _stored_name(name: str) -> str:
    """A property name as the Store keeps it: Clark notation, ``{}name`` for the null namespace."""
    return name if name.startswith("{") else "{}" + name


def _wire_name(name: str) -> str:
    return name[2:] if name.startswith("{}") else name


def child_path(parent: str, name: str) -> str:
    """A Store folder path below ``parent`` ("" is the drive root)."""
    return f"{parent}/{name}" if parent else name


class DriveResource:
    """Shortcuts to the core and the request's account, shared by every resource class."""

    provider: DriveProvider
    environ: dict

    def get_href(self) -> str:
        # Like wsgidav's, but "@" (in every drive's login) and the other sub-delims
        # RFC 3986 allows in a path stay literal: clients such as cadaver/neon
        # compare hrefs with the URL they asked for without unescaping.
        return quote(self.provider.mount_path + self.provider.share_path + self.get_preferred_path(),
                     safe=HREF_SAFE)

    def get_ref_url(self) -> str:
        """The key locks are kept under (wsgidav's "ref URL"): one per resource, however it is reached.

        A group's file is ``/<login>/Groups/<group>/f`` for every member and a shared
        folder is under each grantee's ``Shared with me/``; keyed by its place in the
        owner's drive (``/~<owner principal>/<folder path>/<name>``), a lock one user
        takes binds every other path to the same resource. Virtual folders keep their URL.
        """
        cached = getattr(self, "_ref_url", None)
        if cached is None:
            # Asked once per property of a PROPFIND (lockdiscovery, supportedlock …): computed once.
            key = self.lock_key()
            cached = quote(key, safe=HREF_SAFE) if key is not None else super().get_ref_url()  # type: ignore[misc]
            self._ref_url = cached
        return cached

    def lock_key(self) -> str | None:
        return None

    # -- dead properties (RFC 4918 §4.2), kept by the Store per collection or item
    def property_target(self) -> tuple[int, str | None] | None:
        """(collection id, item name or None) the Store keeps this resource's dead properties under."""
        return None

    def dead_properties(self) -> dict[str, str]:
        cached = getattr(self, "_dead_properties", None)
        if cached is None:
            target = self.property_target()
            cached = {}
            if target is not None:
                with store_errors():
                    cached = self.ctx.store.get_properties(target[0], target[1], actor=self.actor)
            self._dead_properties = cached
        return cached

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        names = super().get_property_names(is_allprop=is_allprop)  # type: ignore[misc]
        return names + [_wire_name(name) for name in self.dead_properties()]

    def get_property_value(self, name: str):  # type: ignore[no-untyped-def]
        if name.startswith("{DAV:}"):
            return super().get_property_value(name)  # type: ignore[misc]
        value = self.dead_properties().get(_stored_name(name))
        if value is None:
            raise DAVError(HTTP_NOT_FOUND)
        return xml_tools.string_to_xml(value)

    def set_property_value(self, name: str, value, *, dry_run: bool = False):  # type: ignore[no-untyped-def]
        """Dead properties (Win32 ones from Windows Explorer included) go to the Store.

        wsgidav calls this once per property with ``dry_run`` (to validate), then once
        per property for real; the first real call applies the whole PROPPATCH in one
        Store transaction, so it succeeds or fails as a whole (RFC 4918 §9.2).
        """
        target = self.property_target()
        if name.startswith("{DAV:}") or target is None:
            return super().set_property_value(name, value, dry_run=dry_run)  # type: ignore[misc]
        patch = self.environ.setdefault(PROPPATCH_KEY, {"changes": {}, "applied": False, "error": None})
        if dry_run:
            xml = None if value is None else xml_tools.etree.tostring(value, encoding="unicode")
            if xml is not None and len(xml.encode()) > MAX_PROPERTY_BYTES:
                raise DAVError(HTTP_INSUFFICIENT_STORAGE, f"A property value may hold {MAX_PROPERTY_BYTES} bytes")
            if "write" not in self.rights():
                raise DAVError(HTTP_FORBIDDEN, "You may not change the properties of this resource")
            patch["changes"][_stored_name(name)] = xml
            return None
        if not patch["applied"]:
            patch["applied"] = True
            try:
                with store_errors():
                    self.ctx.store.set_properties(target[0], patch["changes"], target[1], actor=self.actor)
            except DAVError as exc:
                patch["error"] = exc
            self._dead_properties = None
        if patch["error"] is not None:
            raise patch["error"]
        return None

    def remove_all_properties(self, *, recursive: bool) -> None:
        return None  # the Store removes an item's or folder's properties with it

    def rights(self) -> frozenset[str]:
        """The request account's rights on this resource (``kantoor.auth.rights`` vocabulary)."""
        target = self.property_target()
        if target is None:
            return frozenset()
        cached = getattr(self, "_rights", None)
        if cached is None:
            with store_errors():
                cached = self.ctx.store.rights_held(target[0], target[1], actor=self.actor)
            self._rights = cached
        return cached

    def copy_dead_properties_to(self, collection_id: int, item_name: str | None) -> None:
        """COPY takes the dead properties along (RFC 4918 §9.8.2)."""
        properties = self.dead_properties()
        if properties:
            with store_errors():
                self.ctx.store.set_properties(collection_id, dict(properties), item_name, actor=self.actor)

    @property
    def ctx(self) -> DriveContext:
        return self.provider.ctx

    @property
    def account(self) -> Account:
        return self.environ[ACCOUNT_KEY]

    @property
    def actor(self) -> int:
        return self.account.principal_id

    def _drive_quota(self, owner_id: int | None = None) -> tuple[int, int]:
        """(used, available) bytes of a drive owner's documents capacity (a group's drive counts
        against the group), once per owner and request."""
        owner_id = self.actor if owner_id is None else owner_id
        cache = self.environ.setdefault("kantoor.files.quota", {})
        if owner_id not in cache:
            store = self.ctx.store
            used = store.usage(owner_id).get("documents", 0)
            plan = self.account.plan if owner_id == self.actor else store.drive_plan(owner_id)
            capacity = self.ctx.quota.plan(plan).capacity("documents")
            cache[owner_id] = (used, max(capacity - used, 0))
        return cache[owner_id]


class VirtualFolder(DriveResource, DAVCollection):
    """A read-only folder made up by the drive (``Groups``, ``Shared with me``); its members are real."""

    def get_used_bytes(self) -> int | None:
        return self._drive_quota()[0]

    def get_available_bytes(self) -> int | None:
        return self._drive_quota()[1]

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        names = super().get_property_names(is_allprop=is_allprop)
        return [n for n in names if n not in QUOTA_PROPERTIES] if is_allprop else names

    def get_member_names(self) -> list[str]:
        return [util.get_uri_name(m.path) for m in self.get_member_list()]

    def create_collection(self, name: str) -> None:
        raise DAVError(HTTP_FORBIDDEN, f"{self.name} is made by the server; nothing can be created in it")

    def create_empty_resource(self, name: str) -> None:
        raise DAVError(HTTP_FORBIDDEN, f"{self.name} is made by the server; nothing can be put in it")

    def delete(self) -> None:
        raise DAVError(HTTP_FORBIDDEN, f"{self.name} cannot be deleted")

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> list:
        raise DAVError(HTTP_FORBIDDEN, f"{self.name} cannot be moved")

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        raise DAVError(HTTP_FORBIDDEN, f"{self.name} cannot be copied or moved")


class GroupsFolder(VirtualFolder):
    """``Groups/``: the drive of every group the user belongs to."""

    def get_member_list(self) -> list[DriveResource]:
        members: list[DriveResource] = []
        with store_errors():
            for name, owner in self.ctx.store.drive_groups(self.actor):
                root = group_root(self.ctx.store, owner, self.actor)
                if root is not None:
                    members.append(Folder(util.join_uri(self.path, name), self.environ, root))
        return members


class SharedFolder(VirtualFolder):
    """``Shared with me/``: folders and files others shared with the user or a group of theirs."""

    def get_member_list(self) -> list[DriveResource]:
        members: list[DriveResource] = []
        for name, entry in shared_entries(self.ctx.store, self.actor):
            url = util.join_uri(self.path, name)
            if entry.item is not None:
                members.append(File(url, self.environ, entry.collection, entry.item))
            else:
                members.append(Folder(url, self.environ, entry.collection))
        return members


def group_root(store: Store, owner: int, actor: int) -> Collection | None:
    """The root folder of a group's drive, or None if the actor may not see it."""
    try:
        return store.find_collection(owner, "folder", "", actor)
    except NotFound:
        return None


def shared_entries(store: Store, actor: int) -> list[tuple[str, SharedEntry]]:
    """"Shared with me" as (name, entry): a name two entries share gets the owner added, ``report (ann@x)``."""
    with store_errors():
        entries = store.shared_with_me(actor)
    counts = Counter(entry.name for entry in entries)
    named: list[tuple[str, SharedEntry]] = []
    seen: set[str] = set()
    for entry in entries:
        name = entry.name if counts[entry.name] == 1 else f"{entry.name} ({entry.owner_name})"
        if name in seen:
            name = f"{entry.name} ({entry.owner_name}, {entry.collection.id})"
        seen.add(name)
        named.append((name, entry))
    return named


class DriveListing(DriveResource, DAVCollection):
    """``/files/`` itself: lists the drives the user can reach (for now only their own)."""

    def __init__(self, path: str, environ: dict) -> None:
        super().__init__(path, environ)

    def get_member_names(self) -> list[str]:
        return [self.account.login]

    def get_display_name(self) -> str:
        return "files"

    def create_collection(self, name: str) -> None:
        raise DAVError(HTTP_FORBIDDEN, f"Create folders inside /files/{self.account.login}/")

    def create_empty_resource(self, name: str) -> None:
        raise DAVError(HTTP_FORBIDDEN, f"Put files inside /files/{self.account.login}/")

    def delete(self) -> None:
        raise DAVError(HTTP_FORBIDDEN, "The list of drives cannot be deleted")


class Folder(DriveResource, DAVCollection):
    """A drive folder: a Store collection of kind ``folder``."""

    def __init__(self, path: str, environ: dict, collection: Collection, *, mount_root: bool = False,
                 drop_only: bool = False) -> None:
        super().__init__(path, environ)
        self.collection = collection
        # /files/<login>/ itself, which also shows "Groups" and "Shared with me".
        self.mount_root = mount_root
        # Another member's Drop folder: the user may add files, never list, read or replace them.
        self.drop_only = drop_only

    # -- properties
    def lock_key(self) -> str | None:
        return folder_key(self.collection)

    def property_target(self) -> tuple[int, str | None] | None:
        return self.collection.id, None

    def get_creation_date(self) -> float | None:
        return epoch_seconds(self.collection.created_at)

    def get_last_modified(self) -> float | None:
        return epoch_seconds(self.collection.updated_at)

    def get_used_bytes(self) -> int | None:
        return None if self.drop_only else self._drive_quota(self.collection.owner_id)[0]

    def get_available_bytes(self) -> int | None:
        return None if self.drop_only else self._drive_quota(self.collection.owner_id)[1]

    def check_new_name(self, name: str) -> None:
        """Refuse names a member of this folder may not get (invalid, or one of the mount point's own)."""
        _check_name(name)
        if self.mount_root and name in RESERVED_NAMES:
            raise DAVError(HTTP_FORBIDDEN, f"{name!r} is reserved at the top of your drive")

    def get_property_names(self, *, is_allprop: bool) -> list[str]:
        names = super().get_property_names(is_allprop=is_allprop)
        if is_allprop:
            # RFC 4331 §3: quota properties are only returned when asked for by name.
            names = [n for n in names if n not in QUOTA_PROPERTIES]
        return names

    # -- members
    def _members(self) -> tuple[list[Collection], list[Item]]:
        with store_errors():
            store, coll = self.ctx.store, self.collection
            folders = store.list_collections(coll.owner_id, "folder", self.actor, parent_id=coll.id)
            items = store.list_items(coll.id, self.actor)
        return folders, items

    def get_member_names(self) -> list[str]:
        folders, items = self._members()
        virtual = list(RESERVED_NAMES) if self.mount_root else []
        return virtual + [f.path.rsplit("/", 1)[-1] for f in folders if f.path.rsplit("/", 1)[-1] not in virtual] + [
            i.name for i in items if i.name not in virtual]

    def get_member_list(self) -> list[DriveResource]:
        # One query per kind instead of one resolution per member.
        propfind = self.environ.get("REQUEST_METHOD") == "PROPFIND"
        properties: dict[str, dict[str, str]] = {}
        if propfind:
            # PROPFIND Depth 1: folders, files (without their bodies) and every file's
            # dead properties in one session, and the locks below in one more query.
            with store_errors():
                listing = self.ctx.store.list_drive_folder(self.collection.id, actor=self.actor)
            folders, items, properties = listing.folders, listing.items, listing.properties
            if items:
                self.provider.prefetch_locks(self.get_ref_url())
        else:
            folders, items = self._members()
        members: list[DriveResource] = []
        if self.mount_root:
            members += [GroupsFolder(util.join_uri(self.path, GROUPS), self.environ),
                        SharedFolder(util.join_uri(self.path, SHARED), self.environ)]
        for folder in folders:
            name = folder.path.rsplit("/", 1)[-1]
            members.append(Folder(util.join_uri(self.path, name), self.environ, folder))
        for item in items:
            member = File(util.join_uri(self.path, item.name), self.environ, self.collection, item)
            if propfind:
                member._dead_properties = properties.get(item.name, {})
            members.append(member)
        return members

    # -- writes
    def create_collection(self, name: str) -> None:
        self.check_new_name(name)
        path = child_path(self.collection.path, name)
        if len(path) > MAX_FOLDER_PATH:
            raise DAVError(HTTP_FORBIDDEN, f"Folder paths are limited to {MAX_FOLDER_PATH} characters")
        with store_errors():
            self.ctx.store.create_collection(self.collection.owner_id, "folder", path, actor=self.actor)

    def create_empty_resource(self, name: str) -> File:
        self.check_new_name(name)
        if self.drop_only:
            if self.environ.get("REQUEST_METHOD") != "PUT":
                raise DAVError(HTTP_FORBIDDEN, "Files are added to another's Drop folder with PUT only")
            return File(util.join_uri(self.path, name), self.environ, self.collection, None, name, drop=True)
        if self.environ.get("REQUEST_METHOD") == "LOCK":
            # LOCK on an unmapped URL creates an empty resource (RFC 4918 §7.3).
            with store_errors():
                item, _created = self.ctx.store.put_item(
                    self.collection.id, name, b"", guessed_content_type(name, None, self.environ), actor=self.actor)
            return File(util.join_uri(self.path, name), self.environ, self.collection, item)
        # PUT: nothing is stored until the body has arrived (see Upload).
        return File(util.join_uri(self.path, name), self.environ, self.collection, None, name)

    def support_recursive_delete(self) -> bool:
        return True  # Store.delete_collection removes the whole subtree in one transaction

    def delete(self) -> None:
        if not self.collection.path:
            raise DAVError(HTTP_FORBIDDEN, "The root of a drive cannot be deleted")
        if self.collection.special_use:
            raise DAVError(HTTP_FORBIDDEN, f"The {self.collection.display_name} cannot be deleted")
        with store_errors():
            self.ctx.store.delete_collection(self.collection.id, actor=self.actor)
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def support_recursive_move(self, dest_path: str) -> bool:
        return _same_drive(self, dest_path)

    def move_recursive(self, dest_path: str) -> list:
        # One Store transaction renames the whole subtree (wsgidav has already
        # removed an existing destination when Overwrite allowed it).
        if not self.collection.path or self.collection.special_use:
            raise DAVError(HTTP_FORBIDDEN, "This folder cannot be moved or renamed")
        parent = _destination_folder(self, dest_path)
        name = util.get_uri_name(dest_path)
        parent.check_new_name(name)
        if len(child_path(parent.collection.path, name)) > MAX_FOLDER_PATH:
            raise DAVError(HTTP_FORBIDDEN, f"Folder paths are limited to {MAX_FOLDER_PATH} characters")
        with store_errors():
            self.ctx.store.move_collection(self.collection.id, parent.collection.id, name, actor=self.actor)
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)
        return []

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        # Members are copied one by one by wsgidav; here only the folder itself.
        parent = _destination_folder(self, dest_path)
        name = util.get_uri_name(dest_path)
        parent.check_new_name(name)
        with store_errors():
            try:
                created = self.ctx.store.create_collection(parent.collection.owner_id, "folder",
                                                           child_path(parent.collection.path, name), actor=self.actor)
            except AlreadyExists:
                return  # COPY onto an existing folder merges (RFC 4918 §9.8.4)
        self.copy_dead_properties_to(created.id, None)


class File(DriveResource, DAVNonCollection):
    """A file: a Store item in its folder's collection; ``item`` None while a PUT is pending."""

    def __init__(self, path: str, environ: dict, collection: Collection, item: Item | None,
                 name: str | None = None, *, drop: bool = False) -> None:
        super().__init__(path, environ)
        self.collection = collection
        self.item = item
        self.item_name = item.name if item is not None else (name or self.name)
        self.upload: Upload | None = None
        # A PUT into another's Drop folder: stored under a free name, never replacing a file.
        self.drop = drop

    # -- properties
    def lock_key(self) -> str | None:
        return folder_key(self.collection) + "/" + self.item_name

    def property_target(self) -> tuple[int, str | None] | None:
        return (self.collection.id, self.item_name) if self.item is not None else None

    def get_content_length(self) -> int:
        return int(self.item.size) if self.item is not None else 0

    def get_content_type(self) -> str:
        if self.item is not None and self.item.content_type:
            return self.item.content_type
        return guessed_content_type(self.item_name, None, self.environ)

    def get_creation_date(self) -> float | None:
        return epoch_seconds(self.item.created_at) if self.item is not None else None

    def get_last_modified(self) -> float | None:
        return epoch_seconds(self.item.updated_at) if self.item is not None else None

    def get_etag(self) -> str | None:
        # wsgidav wants the tag without its quotes; the Store keeps them.
        return self.item.etag.strip('"') if self.item is not None else None

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True  # open_body() is seekable, so wsgidav serves Range requests

    def get_property_value(self, name: str):  # type: ignore[no-untyped-def]
        if name == "{DAV:}getetag" and self.item is not None:
            # DAV:getetag holds the entity-tag with its quotes (RFC 4918 §15.6);
            # wsgidav 4.4 would print it bare.
            return self.item.etag
        return super().get_property_value(name)

    # -- content
    def get_content(self) -> BinaryIO:
        if self.item is None:
            raise DAVError(HTTP_CONFLICT, "The file is still being written")
        return self.ctx.store.open_body(self.item)

    def begin_write(self, *, content_type: str | None = None) -> Upload:
        self.upload = Upload(self, guessed_content_type(self.item_name, content_type, self.environ))
        return self.upload

    def end_write(self, *, with_errors: bool) -> None:
        # A refused upload (quota, size) is reported here rather than from inside
        # wsgidav's copy loop, which would log it as a server failure.
        if self.upload is not None and self.upload.error is not None:
            raise self.upload.error

    # -- writes
    def support_recursive_move(self, dest_path: str) -> bool:
        # wsgidav asks files too (its default asserts on them); a native move
        # renames the item instead of copying its bytes.
        return self.item is not None and _same_drive(self, dest_path)

    def move_recursive(self, dest_path: str) -> list:
        assert self.item is not None
        parent = _destination_folder(self, dest_path)
        name = util.get_uri_name(dest_path)
        parent.check_new_name(name)
        with store_errors():
            self.ctx.store.move_item(self.collection.id, self.item_name, parent.collection.id, name,
                                     actor=self.actor)
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)
        return []

    def delete(self) -> None:
        with store_errors():
            self.ctx.store.delete_item(self.collection.id, self.item_name, actor=self.actor)
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        # MOVE is a copy followed by a delete (done by wsgidav), so both stream the body once.
        if self.item is None:
            raise DAVError(HTTP_CONFLICT, "The file is still being written")
        parent = _destination_folder(self, dest_path)
        name = util.get_uri_name(dest_path)
        parent.check_new_name(name)
        with store_errors(), self.ctx.store.open_body(self.item) as body:
            self.ctx.store.put_item(parent.collection.id, name, body, self.item.content_type, actor=self.actor,
                                    max_size=self.ctx.settings.limits.max_upload_bytes)
        self.copy_dead_properties_to(parent.collection.id, name)


def _check_name(name: str) -> None:
    try:
        validate_item_name(name)
    except ValueError as exc:
        raise DAVError(HTTP_FORBIDDEN, f"Not a valid name: {exc}") from None


def _destination_folder(source: DriveResource, dest_path: str) -> Folder:
    parent = source.provider.get_resource_inst(util.get_uri_parent(dest_path), source.environ)
    if not isinstance(parent, Folder):
        raise DAVError(HTTP_CONFLICT, "The destination's parent must be an existing folder")
    return parent


def _same_drive(source: Folder | File, dest_path: str) -> bool:
    """True if ``dest_path``'s parent is a folder of the source's owner (so the Store can move natively)."""
    parent = source.provider.get_resource_inst(util.get_uri_parent(dest_path), source.environ)
    return isinstance(parent, Folder) and parent.collection.owner_id == source.collection.owner_id


def guessed_content_type(name: str, declared: str | None, environ: dict) -> str:
    """The client's Content-Type, or a guess from the name when it sent none or a generic one."""
    declared = (declared or "").strip()
    if not declared or declared.lower().startswith("application/octet-stream"):
        declared = _guess_type(name, environ.get("wsgidav.config"))
    return declared[:MAX_CONTENT_TYPE]


def _guess_type(name: str, config: dict | None) -> str:
    """wsgidav's guess from a file name (mimetypes, then its own table), remembered per extension."""
    charset = config.get("default_charset") if config else None
    if ":" in name or "/" in name:
        # mimetypes reads "data:…" as a data URL and would split a path: ask it as it is.
        return util.guess_mime_type(name, config)
    # Only the extensions decide (mimetypes splits them off the end; leading dots start no extension).
    bare = name.lstrip(".")
    dot = bare.find(".")
    return _guess_by_extensions(bare[dot:] if dot >= 0 else "", charset)


@functools.lru_cache(maxsize=1024)
def _guess_by_extensions(extensions: str, charset: str | None) -> str:
    # mimetypes' guess cost ~15 µs of every PUT (a third of it a regex on the name as a URL).
    return util.guess_mime_type("x" + extensions, {"default_charset": charset} if charset else None)
