"""The drive's DAV resources: the ``/files/`` listing, folders (Store collections) and files (Store items).

Every Store call passes the request's principal as ``actor`` so the Store's ACL
engine decides rights; Store errors become HTTP statuses through
:func:`~kantoor.davserver.files.errors.store_errors`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote

from wsgidav import util
from wsgidav.dav_error import HTTP_CONFLICT, HTTP_FORBIDDEN, DAVError
from wsgidav.dav_provider import DAVCollection, DAVNonCollection

from kantoor.davserver.files.context import ACCOUNT_KEY, DriveContext
from kantoor.davserver.files.errors import store_errors
from kantoor.davserver.files.upload import Upload
from kantoor.storage import AlreadyExists
from kantoor.storage.models import Account, Collection, Item
from kantoor.storage.store import validate_item_name

if TYPE_CHECKING:
    from kantoor.davserver.files.provider import DriveProvider

HREF_SAFE = "/!*'(),$-_|.~@:+=;&"
WINDOWS_PROPERTY_PREFIX = "{urn:schemas-microsoft-com:}Win32"
QUOTA_PROPERTIES = ("{DAV:}quota-used-bytes", "{DAV:}quota-available-bytes")
# Item.content_type is a String(200) column, Collection.path a String(1024) one.
MAX_CONTENT_TYPE = 200
MAX_FOLDER_PATH = 1024


def _epoch(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands timestamps back naive; they are UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def child_path(parent: str, name: str) -> str:
    """A Store folder path below ``parent`` ("" is the drive root)."""
    return f"{parent}/{name}" if parent else name


class _DriveResource:
    """Shortcuts to the core and the request's account, shared by every resource class."""

    provider: DriveProvider
    environ: dict

    def get_href(self) -> str:
        # Like wsgidav's, but "@" (in every drive's login) and the other sub-delims
        # RFC 3986 allows in a path stay literal: clients such as cadaver/neon
        # compare hrefs with the URL they asked for without unescaping.
        return quote(self.provider.mount_path + self.provider.share_path + self.get_preferred_path(),
                     safe=HREF_SAFE)

    def set_property_value(self, name: str, value, *, dry_run: bool = False):  # type: ignore[no-untyped-def]
        if name.startswith(WINDOWS_PROPERTY_PREFIX):
            # Explorer PROPPATCHes Win32 times/attributes after every upload and
            # reports an error when refused; the Store keeps its own timestamps.
            return True
        return super().set_property_value(name, value, dry_run=dry_run)  # type: ignore[misc]

    @property
    def ctx(self) -> DriveContext:
        return self.provider.ctx

    @property
    def account(self) -> Account:
        return self.environ[ACCOUNT_KEY]

    @property
    def actor(self) -> int:
        return self.account.principal_id

    def _drive_quota(self) -> tuple[int, int]:
        """(used, available) bytes of the account's documents capacity, once per request."""
        cached = self.environ.get("kantoor.files.quota")
        if cached is None:
            used = self.ctx.store.usage(self.account.principal_id).get("documents", 0)
            capacity = self.ctx.quota.plan(self.account.plan).capacity("documents")
            cached = (used, max(capacity - used, 0))
            self.environ["kantoor.files.quota"] = cached
        return cached


class DriveListing(_DriveResource, DAVCollection):
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


class Folder(_DriveResource, DAVCollection):
    """A drive folder: a Store collection of kind ``folder``."""

    def __init__(self, path: str, environ: dict, collection: Collection) -> None:
        super().__init__(path, environ)
        self.collection = collection

    # -- properties
    def get_creation_date(self) -> float | None:
        return _epoch(self.collection.created_at)

    def get_last_modified(self) -> float | None:
        return _epoch(self.collection.updated_at)

    def get_used_bytes(self) -> int | None:
        return self._drive_quota()[0]

    def get_available_bytes(self) -> int | None:
        return self._drive_quota()[1]

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
        return [f.path.rsplit("/", 1)[-1] for f in folders] + [i.name for i in items]

    def get_member_list(self) -> list[Folder | File]:
        # One query per kind instead of one resolution per member.
        folders, items = self._members()
        members: list[Folder | File] = []
        for folder in folders:
            name = folder.path.rsplit("/", 1)[-1]
            members.append(Folder(util.join_uri(self.path, name), self.environ, folder))
        for item in items:
            members.append(File(util.join_uri(self.path, item.name), self.environ, self.collection, item))
        return members

    # -- writes
    def create_collection(self, name: str) -> None:
        _check_name(name)
        path = child_path(self.collection.path, name)
        if len(path) > MAX_FOLDER_PATH:
            raise DAVError(HTTP_FORBIDDEN, f"Folder paths are limited to {MAX_FOLDER_PATH} characters")
        with store_errors():
            self.ctx.store.create_collection(self.collection.owner_id, "folder", path, actor=self.actor)

    def create_empty_resource(self, name: str) -> File:
        _check_name(name)
        if self.environ.get("REQUEST_METHOD") == "LOCK":
            # LOCK on an unmapped URL creates an empty resource (RFC 4918 §7.3).
            with store_errors():
                item, _created = self.ctx.store.put_item(
                    self.collection.id, name, b"", _content_type(name, None, self.environ), actor=self.actor)
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
        _check_name(name)
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
        _check_name(name)
        with store_errors():
            try:
                self.ctx.store.create_collection(parent.collection.owner_id, "folder",
                                                 child_path(parent.collection.path, name), actor=self.actor)
            except AlreadyExists:
                pass  # COPY onto an existing folder merges (RFC 4918 §9.8.4)


class File(_DriveResource, DAVNonCollection):
    """A file: a Store item in its folder's collection; ``item`` None while a PUT is pending."""

    def __init__(self, path: str, environ: dict, collection: Collection, item: Item | None,
                 name: str | None = None) -> None:
        super().__init__(path, environ)
        self.collection = collection
        self.item = item
        self.item_name = item.name if item is not None else (name or self.name)
        self.upload: Upload | None = None

    # -- properties
    def get_content_length(self) -> int:
        return int(self.item.size) if self.item is not None else 0

    def get_content_type(self) -> str:
        if self.item is not None and self.item.content_type:
            return self.item.content_type
        return _content_type(self.item_name, None, self.environ)

    def get_creation_date(self) -> float | None:
        return _epoch(self.item.created_at) if self.item is not None else None

    def get_last_modified(self) -> float | None:
        return _epoch(self.item.updated_at) if self.item is not None else None

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
        self.upload = Upload(self, _content_type(self.item_name, content_type, self.environ))
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
        _check_name(name)
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
        _check_name(name)
        with store_errors(), self.ctx.store.open_body(self.item) as body:
            self.ctx.store.put_item(parent.collection.id, name, body, self.item.content_type, actor=self.actor,
                                    max_size=self.ctx.settings.limits.max_upload_bytes)


def _check_name(name: str) -> None:
    try:
        validate_item_name(name)
    except ValueError as exc:
        raise DAVError(HTTP_FORBIDDEN, f"Not a valid name: {exc}") from None


def _destination_folder(source: _DriveResource, dest_path: str) -> Folder:
    parent = source.provider.get_resource_inst(util.get_uri_parent(dest_path), source.environ)
    if not isinstance(parent, Folder):
        raise DAVError(HTTP_CONFLICT, "The destination's parent must be an existing folder")
    return parent


def _same_drive(source: Folder | File, dest_path: str) -> bool:
    """True if ``dest_path``'s parent is a folder of the source's owner (so the Store can move natively)."""
    parent = source.provider.get_resource_inst(util.get_uri_parent(dest_path), source.environ)
    return isinstance(parent, Folder) and parent.collection.owner_id == source.collection.owner_id


def _content_type(name: str, declared: str | None, environ: dict) -> str:
    """The client's Content-Type, or a guess from the name when it sent none or a generic one."""
    declared = (declared or "").strip()
    if not declared or declared.lower().startswith("application/octet-stream"):
        declared = util.guess_mime_type(name, environ.get("wsgidav.config"))
    return declared[:MAX_CONTENT_TYPE]
