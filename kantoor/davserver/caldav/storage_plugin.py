"""Radicale storage plugin on the Store: no Radicale filesystem storage at all.

Radicale's own lock is not needed: every write is one Store transaction, and the
preconditions Radicale checks (If-Match, If-None-Match, UID uniqueness) are
checked again by the Store inside that transaction, so two server processes
behave as one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

from radicale import config as radicale_config
from radicale import item as radicale_item
from radicale import pathutils, types, xmlutils
from radicale import storage as radicale_storage

from kantoor.davserver.caldav.bindings import (
    PREFIX,
    binding_name,
    bound_collection_id,
    forget_shares,
    is_members_book,
    is_reserved,
    shared_by_id,
    shared_with_me,
    title,
)
from kantoor.davserver.caldav.context import DavContext, current_request
from kantoor.davserver.caldav.properties import PROTECTED, text_property_xml
from kantoor.davserver.caldav.resources import (
    KIND_OF_TAG,
    PROPERTY_COLUMNS,
    TAG_OF_KIND,
    DavPrecondition,
    PrincipalCollection,
    RootCollection,
    ScheduleBox,
    StoredCollection,
    StoredItem,
    UidConflict,
)
from kantoor.davserver.caldav.scheduling import is_schedule_box
from kantoor.storage import AlreadyExists, NotFound, PermissionDenied
from kantoor.storage.models import Account, Collection

DAV_KINDS = tuple(TAG_OF_KIND)


class Storage(radicale_storage.BaseStorage):
    # Store item and collection names accept any character but "/" and NUL, so
    # Radicale need not restrict UTF-8 or punctuation in paths.
    _supports_unicode = True
    _supports_trailing_whitespace = True
    _supports_problematic_chars = True

    def __init__(self, configuration: radicale_config.Configuration, context: DavContext) -> None:
        super().__init__(configuration)
        self._context = context

    # -- lookups
    def _owner(self, login: str) -> Account | None:
        account = self._context.store.get_account(login)
        # Only the canonical login names a principal: an alias would give the
        # same data a second URL, which confuses sync clients.
        return account if account is not None and account.login == login else None

    def _find(self, owner: Account, name: str) -> Collection | None:
        """The owner's calendar or address book called ``name`` (one namespace for both)."""
        actor = current_request().actor
        for kind in DAV_KINDS:
            try:
                return self._context.store.find_collection(owner.principal_id, kind, name, actor)
            except NotFound:
                continue
        return None

    def _collection(self, owner: Account, name: str) -> StoredCollection | None:
        """``/<owner>/<name>/``: one of the owner's own collections, or one bound into the
        home of the logged-in account (:mod:`kantoor.davserver.caldav.bindings`)."""
        collection_id = bound_collection_id(name)
        if collection_id is None:
            row = self._find(owner, name)
            return StoredCollection(self._context, owner.login, row) if row is not None else None
        actor = current_request().actor
        if owner.principal_id != actor:
            return None  # bindings exist only in one's own home
        shared = shared_by_id(self._context, collection_id)
        if shared is not None and is_members_book(shared.collection):
            self._refresh_members_books(actor)
            shared = shared_by_id(self._context, collection_id)
        if shared is None:
            return None
        return StoredCollection(self._context, owner.login, shared.collection, binding=name, title=title(shared))

    def _refresh_members_books(self, actor: int) -> None:
        for group in self._context.store.member_groups(actor):
            self._context.store.refresh_members_book(group.id)
        forget_shares()  # a book may be new, or have a new modseq

    def _children(self, owner: Account) -> list[StoredCollection]:
        actor = current_request().actor
        found: list[StoredCollection] = []
        for kind in DAV_KINDS:
            found.extend(StoredCollection(self._context, owner.login, c)
                         for c in self._context.store.list_collections(owner.principal_id, kind, actor)
                         if c.path and "/" not in c.path)
        found.sort(key=lambda c: c.row.path)
        if owner.principal_id == actor:
            self._refresh_members_books(actor)
            found.extend(StoredCollection(self._context, owner.login, shared.collection,
                                          binding=binding_name(shared.collection.id), title=title(shared))
                         for shared in shared_with_me(self._context))
        return found

    def discover(
            self, path: str, depth: str = "0",
            child_context_manager: Callable[[str, str | None], AbstractContextManager[None]] | None = None,
            user_groups: set[str] | None = None) -> Iterable[types.CollectionOrItem]:
        sane = pathutils.strip_path(path)
        parts = sane.split("/") if sane else []
        if not parts:
            yield RootCollection()
            if depth != "0":
                state = current_request()
                if state.account is not None:
                    # Only one's own principal: the root never lists other accounts.
                    yield PrincipalCollection(state.account)
            return
        owner = self._owner(parts[0])
        if owner is None:
            return
        if len(parts) == 1:
            yield PrincipalCollection(owner)
            if depth != "0":
                yield from self._children(owner)
            return
        if len(parts) == 2 and is_schedule_box(parts[1]) and owner.principal_id == current_request().actor:
            yield ScheduleBox(owner, parts[1])
            return
        collection = self._collection(owner, parts[1])
        if collection is None:
            return
        if len(parts) == 2:
            yield collection
            if depth != "0":
                yield from collection.get_all()
            return
        if len(parts) == 3:
            item = collection.get(parts[2])
            if item is not None:
                yield item

    # -- writes
    def create_collection(
            self, href: str,
            items: Iterable[radicale_item.Item] | None = None,
            props: Mapping[str, str] | None = None,
    ) -> tuple[radicale_storage.BaseCollection, dict[str, radicale_item.Item], list[str]]:
        """MKCALENDAR / MKCOL of a calendar or address book directly under a principal."""
        parts = pathutils.strip_path(href).split("/")
        props = dict(props or {})
        kind = KIND_OF_TAG.get(props.get("tag", ""))
        if len(parts) != 2 or kind is None:
            raise PermissionDenied("only calendars and address books can be created, directly in a principal",
                                   "write")
        if items:
            # Whole-collection PUT is refused earlier (permit_overwrite_collection
            # is off); bulk import belongs to the import/export tools.
            raise PermissionDenied("uploading a whole collection is not supported", "write")
        owner = self._owner(parts[0])
        if owner is None:
            raise NotFound(f"no principal {parts[0]}")
        if is_reserved(parts[1]):
            raise PermissionDenied(f"{parts[1]!r} is reserved (names starting with {PREFIX!r} bind shared "
                                   "collections; schedule-inbox/outbox are the scheduling boxes)", "write")
        if self._find(owner, parts[1]) is not None:
            raise AlreadyExists(f"{parts[1]} exists")
        fields = {column: props[name] for name, column in PROPERTY_COLUMNS.items()
                  if name in props and (kind == "calendar" or column != "components")}
        # Every other property of the MKCALENDAR / extended MKCOL (calendar-timezone,
        # calendar-order …) is kept as a dead property; protected ones are not settable.
        dead = {}
        for name, value in props.items():
            if name == "tag" or name in PROPERTY_COLUMNS:
                continue
            clark_name = xmlutils.make_clark(name)
            if clark_name not in PROTECTED:
                dead[clark_name] = text_property_xml(clark_name, value)
        store, actor = self._context.store, current_request().actor
        row = store.create_collection(owner.principal_id, kind, parts[1], actor=actor, **fields)
        if dead:
            try:
                store.set_properties(row.id, dead, actor=actor)
            except Exception:
                store.delete_collection(row.id, actor)  # nothing half-created
                raise
        return StoredCollection(self._context, owner.login, row), {}, []

    def move(self, item: radicale_item.Item, to_collection: radicale_storage.BaseCollection, to_href: str) -> None:
        """MOVE of one item (same or another collection of the same type), in one Store transaction."""
        source = item.collection
        assert isinstance(source, StoredCollection) and isinstance(to_collection, StoredCollection)
        assert item.href is not None
        _check_component(to_collection, item)
        try:
            self._context.store.move_calendar_item(source.row.id, item.href, to_collection.row.id, to_href,
                                                   actor=current_request().actor)
        except AlreadyExists as exc:
            raise UidConflict(to_collection.tag, str(exc)) from exc

    def copy(self, item: radicale_item.Item, to_collection: radicale_storage.BaseCollection, to_href: str,
             overwrite: bool) -> bool:
        """COPY of one item (RFC 4918 §9.8) in one Store transaction; True when the copy is new."""
        source = item.collection
        assert isinstance(source, StoredCollection) and isinstance(to_collection, StoredCollection)
        assert item.href is not None
        _check_component(to_collection, item)
        try:
            _copy, created = self._context.store.copy_calendar_item(
                source.row.id, item.href, to_collection.row.id, to_href, overwrite=overwrite,
                actor=current_request().actor)
        except AlreadyExists as exc:
            raise UidConflict(to_collection.tag, str(exc)) from exc
        return created

    @contextmanager
    def acquire_lock(self, mode: str, user: str = "", *args: object, **kwargs: object) -> Iterator[None]:
        # Store transactions serialise writers; there is nothing to lock here.
        yield

    def verify(self) -> bool:
        return True


def _check_component(to_collection: StoredCollection, item: radicale_item.Item) -> None:
    """RFC 4791 §5.3.2.1: the destination calendar must hold the item's component type."""
    allowed = [c.strip().upper() for c in to_collection.row.components.split(",") if c.strip()]
    if to_collection.kind == "calendar" and allowed and (item.component_name or "").upper() not in allowed:
        raise DavPrecondition(403, "C:supported-calendar-component", f"this calendar holds only {', '.join(allowed)}")


__all__ = ["Storage", "StoredItem"]
