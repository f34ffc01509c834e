"""Radicale's view of Kantoor's storage: the root, principals, collections and items.

Radicale paths map onto the Store like this:

``/``                      the root (lists only the logged-in user's principal)
``/<login>/``              the account's principal (home of its calendars and address books)
``/<login>/<name>/``       the account's Store collection of kind ``calendar`` or
                           ``addressbook`` whose ``path`` is ``<name>`` (``calendar``,
                           ``tasks``, ``contacts`` exist for every account)
``/<login>/<name>/<href>`` an item of that collection
``/<login>/shared-<id>/``  a calendar or address book of someone else (or of one of the
                           account's groups) bound into its home (:mod:`.bindings`)
``/<login>/schedule-outbox/``, ``/<login>/schedule-inbox/``  RFC 6638 boxes (:mod:`.scheduling`)

Every Store call passes the request's actor, so the Store's ACL engine decides. A PUT or
DELETE of an event the account organizes queues iMIP mail to its attendees (:mod:`.invitations`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import overload

from radicale import item as radicale_item
from radicale import storage as radicale_storage
from radicale.item import filter as radicale_filter

from kantoor.davserver.caldav.bindings import is_members_book
from kantoor.davserver.caldav.contact_query import parse_query
from kantoor.davserver.caldav.context import DavContext, current_put_body, current_request
from kantoor.davserver.caldav.invitations import send_invitations
from kantoor.davserver.caldav.preconditions import DavPrecondition
from kantoor.storage import AlreadyExists, NotFound, PermissionDenied
from kantoor.storage.card_search import card_values
from kantoor.storage.indexing import ItemIndex, index_for
from kantoor.storage.models import Account, Collection, Item

# Radicale's collection tag per Store kind, and back.
TAG_OF_KIND = {"calendar": "VCALENDAR", "addressbook": "VADDRESSBOOK"}
KIND_OF_TAG = {tag: kind for kind, tag in TAG_OF_KIND.items()}
CONTENT_TYPE_OF_KIND = {"calendar": "text/calendar", "addressbook": "text/vcard"}

# Radicale property names (its "human tags") kept in Collection columns.
PROPERTY_COLUMNS = {
    "D:displayname": "display_name",
    "C:calendar-description": "description",
    "CR:addressbook-description": "description",
    "ICAL:calendar-color": "color",
    "C:supported-calendar-component-set": "components",
}

SYNC_TOKEN_PREFIX = "urn:kantoor:sync:"
log = logging.getLogger(__name__)


class UidConflict(DavPrecondition):
    """PUT of an object whose UID another resource of the collection already has (RFC 4791 5.3.2.1)."""

    def __init__(self, tag: str, message: str) -> None:
        super().__init__(409, "C:no-uid-conflict" if tag == "VCALENDAR" else "CR:no-uid-conflict", message)


def http_date(when: dt.datetime | None) -> str:
    if when is None:
        when = dt.datetime.now(dt.UTC)
    if when.tzinfo is None:  # SQLite hands back naive UTC
        when = when.replace(tzinfo=dt.UTC)
    return email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=True)


class StoredItem(radicale_item.Item):
    """A calendar object or vCard from the Store; its body is read only when Radicale needs it."""

    def __init__(self, context: DavContext, row: Item, collection: StoredCollection) -> None:
        is_calendar = collection.kind == "calendar"
        super().__init__(
            collection=collection,
            href=row.name,
            text="",  # placeholder: Radicale insists on text or a vobject; see serialize()
            etag=row.etag,
            last_modified=http_date(row.updated_at),
            uid=row.ical_uid or None,
            name="VCALENDAR" if is_calendar else "VCARD",
            # Radicale's component name is "" for vCards; the Store indexes "VCARD".
            component_name=(row.component or None) if is_calendar else "",
        )
        self._text = None
        self._context = context
        self._row = row

    def serialize(self) -> str:
        if self._text is None:
            self._text = self._context.store.read_body(self._row).decode("utf-8", "replace")
        return self._text

    @property
    def vobject_item(self):  # type: ignore[no-untyped-def]
        self.serialize()
        return super().vobject_item

    def __copy__(self) -> StoredItem:
        # Radicale's expand copies the item, then changes the (shallow-copied)
        # parsed object in place; a copy that parses afresh keeps a second
        # expansion of the same item (getetag + calendar-data) from failing.
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._vobject_item = None
        return clone


class _PlainCollection(radicale_storage.BaseCollection):
    """A collection without a tag (root, principal): holds collections, never items."""

    def __init__(self, path: str) -> None:
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    @property
    def etag(self) -> str:
        return f'"{hashlib.sha256(self._path.encode()).hexdigest()}"'

    @property
    def last_modified(self) -> str:
        return http_date(None)

    def get_multi(self, hrefs: Iterable[str]) -> Iterable[tuple[str, radicale_item.Item | None]]:
        return [(href, None) for href in hrefs]

    def get_all(self) -> Iterable[radicale_item.Item]:
        return []

    def has_uid(self, uid: str) -> bool:
        return False

    def upload(self, href: str, item: radicale_item.Item) -> tuple[radicale_item.Item, radicale_item.Item | None]:
        raise PermissionDenied("only calendars and address books hold items", "write")

    def delete(self, href: str | None = None) -> None:
        raise PermissionDenied("principals and the root cannot be deleted over DAV", "write")

    @overload
    def get_meta(self, key: None = None) -> Mapping[str, str]: ...

    @overload
    def get_meta(self, key: str) -> str | None: ...

    def get_meta(self, key: str | None = None) -> Mapping[str, str] | str | None:
        return {} if key is None else None

    def set_meta(self, props: Mapping[str, str]) -> None:
        raise PermissionDenied("principal properties are managed by the account", "write")


class RootCollection(_PlainCollection):
    def __init__(self) -> None:
        super().__init__("")


class PrincipalCollection(_PlainCollection):
    def __init__(self, account: Account) -> None:
        super().__init__(account.login)
        self.account = account

    def get_meta(self, key: str | None = None) -> Mapping[str, str] | str | None:  # type: ignore[override]
        meta = {"D:displayname": self.account.display_name}
        return meta if key is None else meta.get(key)


class ScheduleBox(_PlainCollection):
    """The account's scheduling outbox or inbox (RFC 6638 §2.1-2.2; see ``scheduling``): no items."""

    def __init__(self, account: Account, name: str) -> None:
        super().__init__(f"{account.login}/{name}")


class StoredCollection(radicale_storage.BaseCollection):
    """A Store calendar or address book as Radicale sees it."""

    def __init__(self, context: DavContext, owner_login: str, row: Collection, binding: str | None = None,
                 title: str | None = None) -> None:
        self._context = context
        self._owner_login = owner_login
        self.row = row
        # Bound into another account's home (see ``bindings``): the name there and the display name.
        self.binding = binding
        self._title = title

    # -- identity
    @property
    def path(self) -> str:
        return f"{self._owner_login}/{self.binding or self.row.path}"

    @property
    def read_only(self) -> bool:
        return is_members_book(self.row)

    @property
    def kind(self) -> str:
        return self.row.kind

    @property
    def tag(self) -> str:
        return TAG_OF_KIND[self.row.kind]

    @property
    def last_modified(self) -> str:
        return http_date(self.row.updated_at)

    def _created_epoch(self) -> int:
        created = self.row.created_at
        return int(created.replace(tzinfo=created.tzinfo or dt.UTC).timestamp()) if created else 0

    def sync_token(self, modseq: int | None = None) -> str:
        # The collection's id plus its creation time, so a token from a deleted
        # collection is never taken for one of a newer collection with a reused id.
        value = self.row.modseq if modseq is None else modseq
        return f"{SYNC_TOKEN_PREFIX}{self.row.id}.{self._created_epoch()}:{value}"

    @property
    def etag(self) -> str:
        # The CTag: changes with every item change (modseq) and every property change.
        # updated_at moves with dead-property changes too (calendar-order, time zone …).
        meta = json.dumps(self.get_meta(), sort_keys=True)
        digest = hashlib.sha256(f"{self.sync_token()}|{meta}|{self.row.updated_at}".encode()).hexdigest()
        return f'"{digest}"'

    # -- items
    def _item(self, row: Item) -> StoredItem:
        return StoredItem(self._context, row, self)

    def get_filtered(self, filters: Iterable[ET.Element]) -> Iterable[tuple[radicale_item.Item, bool]]:
        """calendar-query candidates from the indexed start/end columns; Radicale then filters exactly
        (recurring items are always candidates, so their instances are expanded there).
        addressbook-query: see :mod:`kantoor.davserver.caldav.contact_query`."""
        if self.kind != "calendar":
            query = parse_query(filters)
            if query is None:
                yield from ((item, False) for item in self.get_all())
                return
            actor = current_request().actor
            rows = self._context.store.contact_candidates(self.row.id, query.sql(), actor)
            if any(row.card_fn is None for row in rows):
                # Cards stored before the search columns existed: index them once, so the
                # next query narrows in SQL (this one is exact anyway).
                self._context.store.index_unindexed_cards(self.row.id)
            for row in rows:
                item = self._item(row)
                if query.holds(card_values(item.serialize())):
                    yield item, True  # matched exactly: Radicale need not parse it
            return
        tag, start, end, _simple = radicale_filter.simplify_prefilters(filters, self.tag)
        lower = None if start <= radicale_filter.TIMESTAMP_MIN else dt.datetime.fromtimestamp(start, dt.UTC)
        upper = None if end >= radicale_filter.TIMESTAMP_MAX else dt.datetime.fromtimestamp(end, dt.UTC)
        rows = self._context.store.calendar_candidates(self.row.id, lower, upper, tag, current_request().actor)
        for row in rows:
            yield self._item(row), False

    def get_all(self) -> Iterable[radicale_item.Item]:
        actor = current_request().actor
        return [self._item(row) for row in self._context.store.list_items(self.row.id, actor)]

    def get_multi(self, hrefs: Iterable[str]) -> Iterable[tuple[str, radicale_item.Item | None]]:
        wanted = list(dict.fromkeys(hrefs))
        if not wanted:
            return []
        actor = current_request().actor
        if len(wanted) > 8:
            # One query for a big multiget instead of one per href.
            rows = {row.name: row for row in self._context.store.list_items(self.row.id, actor)}
            return [(href, self._item(rows[href]) if href in rows else None) for href in wanted]
        result: list[tuple[str, radicale_item.Item | None]] = []
        for href in wanted:
            try:
                result.append((href, self._item(self._context.store.get_item(self.row.id, href, actor))))
            except NotFound:
                result.append((href, None))
        return result

    def get(self, href: str) -> StoredItem | None:
        state = current_request()
        try:
            row = self._context.store.get_item(self.row.id, href, state.actor)
        except NotFound:
            state.looked_up[(self.row.id, href)] = None
            return None
        state.looked_up[(self.row.id, href)] = row
        return self._item(row)

    def has_uid(self, uid: str) -> bool:
        # Not scanned here: Store.put_item refuses a clashing UID inside its write
        # transaction (AlreadyExists), which upload() turns into no-uid-conflict.
        return False

    def _preconditions(self, href: str) -> tuple[str | None, bool]:
        """The request's If-Match / If-None-Match, when the request targets this item."""
        state = current_request()
        if state.path.strip("/") != f"{self.path}/{href}":
            return None, False
        return state.if_match, state.if_none_match

    def upload(self, href: str, item: radicale_item.Item) -> tuple[radicale_item.Item, radicale_item.Item | None]:
        state = current_request()
        if self.read_only:
            raise PermissionDenied("a group's members book is read-only", "write")
        if_match, if_none_match = self._preconditions(href)
        allowed = [c.strip().upper() for c in self.row.components.split(",") if c.strip()]
        if self.kind == "calendar" and allowed and item.component_name.upper() not in allowed:
            raise DavPrecondition(403, "C:supported-calendar-component",
                                  f"this calendar holds only {', '.join(allowed)}")
        body = self._client_bytes(href, item) or item.serialize().encode("utf-8")
        before = self._scheduling_body(href)
        try:
            row, _created = self._context.store.put_item(
                self.row.id, href, body, CONTENT_TYPE_OF_KIND[self.kind], actor=state.actor,
                if_match=if_match, if_none_match=if_none_match,
                max_size=self._context.settings.limits.max_dav_body_bytes, index=self._index(body))
        except AlreadyExists as exc:
            raise UidConflict(self.tag, str(exc)) from exc
        self._schedule(before, body)
        uploaded = radicale_item.Item(
            collection=self, href=href, text=item.serialize(), etag=row.etag,
            last_modified=http_date(row.updated_at), uid=row.ical_uid or None)
        return uploaded, None

    def _client_bytes(self, href: str, item: radicale_item.Item) -> bytes | None:
        """The PUT body as the client sent it, if it is this one object (see ``current_put_body``)."""
        original = current_put_body()
        if original is None or current_request().path.strip("/") != f"{self.path}/{href}":
            return None
        try:
            components = radicale_item.read_components(original.decode("utf-8"))
        except Exception:
            return None
        if len(components) != 1 or radicale_item.get_uid_from_object(components[0]) != (item.uid or ""):
            return None
        return original

    def _index(self, body: bytes) -> ItemIndex:
        index = index_for(CONTENT_TYPE_OF_KIND[self.kind], body)
        if self.kind == "calendar" and not index.recurring and body.count(b"RECURRENCE-ID") > 0:
            # Overridden instances may lie anywhere in time: such objects are always
            # time-range candidates, like recurring ones.
            index.recurring = True
        return index

    def delete(self, href: str | None = None) -> None:
        actor = current_request().actor
        if self.read_only or (href is None and self.binding is not None):
            raise PermissionDenied("bound and read-only collections are not deleted through a home", "write")
        if href is None:
            self._context.store.delete_collection(self.row.id, actor)
            return
        if_match, _ = self._preconditions(href)
        before = self._scheduling_body(href)
        self._context.store.delete_item(self.row.id, href, actor, if_match=if_match)
        self._schedule(before, None)

    # -- iMIP (see ``invitations``)
    def _scheduling_body(self, href: str) -> bytes | None:
        """The stored object at ``href`` before a write, when the write may call for invitations."""
        state = current_request()
        if self.kind != "calendar" or state.account is None:
            return None
        key = (self.row.id, href)
        if key in state.looked_up:
            row = state.looked_up.pop(key)  # once: a second write in this request sees the first one's result
        else:
            try:
                row = self._context.store.get_item(self.row.id, href, state.actor)
            except (NotFound, PermissionDenied):
                return None  # nothing there, or nothing this actor may read (the write decides on its own)
        return self._context.store.read_body(row) if isinstance(row, Item) else None

    def _schedule(self, before: bytes | None, after: bytes | None) -> None:
        account = current_request().account
        if self.kind != "calendar" or account is None:
            return
        try:
            send_invitations(self._context, account, before, after)
        except Exception:
            # The write has committed; a mail that cannot be queued must not turn it into an error.
            log.exception("queueing iMIP mail for %s failed", self.path)

    # -- properties
    @overload
    def get_meta(self, key: None = None) -> Mapping[str, str]: ...

    @overload
    def get_meta(self, key: str) -> str | None: ...

    def get_meta(self, key: str | None = None) -> Mapping[str, str] | str | None:
        row = self.row
        meta = {"tag": self.tag}
        if self._title or row.display_name:
            meta["D:displayname"] = self._title or row.display_name
        if row.color:
            meta["ICAL:calendar-color"] = row.color
        if row.description:
            meta["C:calendar-description" if row.kind == "calendar" else "CR:addressbook-description"] = row.description
        if row.kind == "calendar" and row.components:
            meta["C:supported-calendar-component-set"] = row.components
        return meta if key is None else meta.get(key)

    def set_meta(self, props: Mapping[str, str]) -> None:
        """Radicale's PROPPATCH path; Kantoor answers PROPPATCH itself (see ``properties.proppatch``),
        so this only keeps the column properties for any other Radicale caller."""
        if props.get("tag", self.tag) != self.tag:
                raise PermissionDenied("a collection's type cannot change", "write")
        fields = {column: "" for column in ("display_name", "description", "color")}
        if self.kind == "calendar":
            fields["components"] = self.row.components  # the component set is fixed at creation
        for name, value in props.items():
            column = PROPERTY_COLUMNS.get(name)
            if column is not None and column != "components":
                fields[column] = value
        self.row = self._context.store.update_collection(self.row.id, current_request().actor, **fields)

    # -- sync-collection (RFC 6578) from the Store's change log
    def sync(self, old_token: str = "") -> tuple[str, Iterable[str]]:
        actor = current_request().actor
        token = self.sync_token()
        if not old_token:
            return token, [row.name for row in self._context.store.list_items(self.row.id, actor)]
        prefix = self.sync_token(0)[:-1]  # everything before the modseq
        if not old_token.startswith(prefix):
            raise ValueError("sync token of another collection")
        try:
            old_modseq = int(old_token[len(prefix):])
        except ValueError:
            raise ValueError("malformed sync token") from None
        if not 0 <= old_modseq <= self.row.modseq:
            raise ValueError("sync token from the future")
        changes = self._context.store.changes_since(self.row.id, old_modseq, actor)
        return token, list(dict.fromkeys(change.item_name for change in changes))
