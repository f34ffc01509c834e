"""Calendar- and contact-specific reads and writes for CalDAV/CardDAV.

- the rights an actor holds on a collection (for DAV:current-user-privilege-set),
- an account's addresses (for CALDAV:calendar-user-address-set),
- a PROPPATCH's column and dead-property changes in one transaction (RFC 4918 §9.2),
- the dead properties of every item of a collection in one query (PROPFIND Depth 1),
- an atomic MOVE of an item between (or within) calendars or address books,
- the candidates of a time-range calendar-query, from the indexed start/end columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from kantoor.storage.card_search import COLUMN_OF_PROPERTY, like_pattern
from kantoor.storage.errors import AlreadyExists, NotFound, PermissionDenied, PreconditionFailed
from kantoor.storage.indexing import card_columns, index_vcard
from kantoor.storage.models import Account, Alias, Blob, Collection, DeadProperty, Grant, Item, utcnow
from kantoor.storage.names import TOOL_OF_KIND, validate_item_name
from kantoor.storage.properties import MAX_PROPERTY_BYTES
from kantoor.storage.transactions import StoreBase, same_or_null

COLLECTION_COLUMNS = frozenset({"display_name", "description", "color"})
# What a COPY duplicates of an item row: its body and every index column, not its identity.
_COPIED_COLUMNS = tuple(c.key for c in Item.__table__.columns
                        if c.key not in ("id", "collection_id", "name", "uid", "modseq", "created_at", "updated_at"))
# Floating times are indexed as UTC: widen a query by the largest UTC offset.
FLOATING_SLACK = dt.timedelta(hours=14)


class CalendarsMixin(StoreBase):
    def account_addresses(self, login: str) -> list[str]:
        """The account's login first, then its aliases (sorted); [] for an unknown login."""
        with self.read() as s:
            account = s.scalar(select(Account).where(Account.login == login))
            if account is None:
                return []
            aliases = s.scalars(select(Alias.address).where(Alias.account_id == account.id).order_by(Alias.address))
            return [account.login, *aliases]

    def patch_collection(self, collection_id: int, fields: Mapping[str, str],
                         properties: Mapping[str, str | None], item_name: str | None = None,
                         actor: int | None = None) -> None:
        """Apply a PROPPATCH all-or-nothing: display columns of the collection (``fields``) and dead
        properties (``properties``: Clark name → XML, None removes) of the collection or of one item."""
        unknown = set(fields) - COLLECTION_COLUMNS
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        if fields and item_name is not None:
            raise ValueError("items have no display columns")
        for name, value in properties.items():
            if not name.startswith("{") or "}" not in name or len(name) > 512:
                raise ValueError(f"property names are {{namespace}}name, got {name!r}")
            if value is not None and len(value.encode()) > MAX_PROPERTY_BYTES:
                raise ValueError(f"property {name} is larger than {MAX_PROPERTY_BYTES} bytes")
        with self.write() as s:
            coll = self._locked_collection(s, collection_id)
            item = None
            if item_name is not None:
                item = s.scalar(select(Item).where(Item.collection_id == coll.id, Item.name == item_name))
                if item is None:
                    raise NotFound(f"no item {item_name}")
            self.access.authorize(s, actor, "write", coll, item)
            owner = {"collection_id": None if item else coll.id, "item_id": item.id if item else None}
            for name, value in properties.items():
                s.execute(DeadProperty.__table__.delete().where(
                    same_or_null(DeadProperty.collection_id, owner["collection_id"]),
                    same_or_null(DeadProperty.item_id, owner["item_id"]), DeadProperty.name == name))
                if value is not None:
                    s.add(DeadProperty(name=name, value=value, **owner))
            for key, value in fields.items():
                setattr(coll, key, value)
            if item is not None:
                item.updated_at = utcnow()
            else:
                coll.updated_at = utcnow()

    def _transfer_ends(self, s: Session, source_id: int, target_id: int, name: str,
                       verb: str) -> tuple[Collection, Collection, Item]:
        """Lock both collections (in id order, so two transfers cannot deadlock) and find the item."""
        locked = {cid: self._locked_collection(s, cid) for cid in sorted({source_id, target_id})}
        source, target = locked[source_id], locked[target_id]
        if source.kind != target.kind or source.kind not in ("calendar", "addressbook"):
            raise ValueError(f"items {verb} only between calendars or between address books")
        item = s.scalar(select(Item).where(Item.collection_id == source.id, Item.name == name))
        if item is None:
            raise NotFound(f"no item {name}")
        return source, target, item

    def move_calendar_item(self, source_id: int, name: str, target_id: int, new_name: str,
                  actor: int | None = None) -> Item:
        """Move (or rename) a calendar object or vCard in one transaction (WebDAV MOVE).

        Needs ``write`` on the item and ``bind`` on the target (``write`` on an item
        the move replaces); the target's UID must stay unique. The item keeps its
        body, ETag and dead properties; the change log shows a deletion at the
        source and a creation (or modification) at the target.
        """
        validate_item_name(new_name)
        with self.write() as s:
            source, target, item = self._transfer_ends(s, source_id, target_id, name, "move")
            self.access.authorize(s, actor, "write", source, item)
            if source.id == target.id and name == new_name:
                return item
            existing = s.scalar(select(Item).where(Item.collection_id == target.id, Item.name == new_name))
            if existing is None:
                self.access.authorize(s, actor, "bind", target)
            else:
                self.access.authorize(s, actor, "write", target, existing)
            if item.ical_uid:
                clash = s.scalar(select(Item.name).where(
                    Item.collection_id == target.id, Item.ical_uid == item.ical_uid, Item.name != new_name,
                    Item.id != item.id))
                if clash is not None:
                    raise AlreadyExists(f"UID {item.ical_uid} is already used by {clash}")
            tool = TOOL_OF_KIND[target.kind]
            freed = 0
            if existing is not None:
                if existing.blob_sha256:
                    self._release_blobs(s, select(Item.blob_sha256).where(Item.id == existing.id))
                s.execute(delete(Grant).where(Grant.item_id == existing.id))
                freed = existing.size
                s.delete(existing)
                s.flush()
            if source.owner_id != target.owner_id:
                self.quota.reserve(s, target.owner_id, tool, item.size - freed)
                self.quota.reserve(s, source.owner_id, tool, -item.size)
                # Item grants were the old owner's sharing decisions.
                s.execute(delete(Grant).where(Grant.item_id == item.id))
            elif freed:
                self.quota.reserve(s, target.owner_id, tool, -freed)
            self._record_change(s, source, name, item.uid, "deleted")
            item.collection_id = target.id
            item.name = new_name
            item.updated_at = utcnow()
            item.modseq = self._record_change(s, target, new_name, item.uid,
                                              "created" if existing is None else "modified")
            s.flush()
            return item

    def copy_calendar_item(self, source_id: int, name: str, target_id: int, new_name: str, overwrite: bool = True,
                           actor: int | None = None) -> tuple[Item, bool]:
        """Copy a calendar object or vCard to another (or the same) collection in one transaction
        (WebDAV COPY, RFC 4918 §9.8); returns (the copy, created).

        Needs ``read`` on the item and ``bind`` on the target (``write`` on an item the
        copy replaces, which ``overwrite=False`` refuses with PreconditionFailed); the
        target's UID must stay unique (AlreadyExists) and the target owner's capacity
        is charged. The copy has the same body (a shared blob gains a reference) and
        dead properties (§9.8.2); the target's change log shows it.
        """
        validate_item_name(new_name)
        with self.write() as s:
            source, target, item = self._transfer_ends(s, source_id, target_id, name, "copy")
            self.access.authorize(s, actor, "read", source, item)
            if source.id == target.id and name == new_name:
                raise ValueError("an item cannot be copied onto itself")
            existing = s.scalar(select(Item).where(Item.collection_id == target.id, Item.name == new_name))
            if existing is None:
                self.access.authorize(s, actor, "bind", target)
            else:
                if not overwrite:
                    raise PreconditionFailed(f"{new_name} exists and Overwrite is F")
                self.access.authorize(s, actor, "write", target, existing)
            if item.ical_uid:
                clash = s.scalar(select(Item.name).where(
                    Item.collection_id == target.id, Item.ical_uid == item.ical_uid, Item.name != new_name))
                if clash is not None:
                    raise AlreadyExists(f"UID {item.ical_uid} is already used by {clash}")
            freed = 0
            if existing is not None:
                if existing.blob_sha256:
                    self._release_blobs(s, select(Item.blob_sha256).where(Item.id == existing.id))
                freed = existing.size
                s.execute(delete(Grant).where(Grant.item_id == existing.id))
                s.execute(delete(DeadProperty).where(DeadProperty.item_id == existing.id))
            self.quota.reserve(s, target.owner_id, TOOL_OF_KIND[target.kind], item.size - freed)
            copy = existing or Item(collection_id=target.id, name=new_name, created_at=utcnow())
            for column in _COPIED_COLUMNS:
                setattr(copy, column, getattr(item, column))
            copy.updated_at = utcnow()
            if item.blob_sha256:
                s.execute(update(Blob).where(Blob.sha256 == item.blob_sha256)
                          .values(refcount=Blob.refcount + 1, updated_at=utcnow()))
            if existing is None:
                s.add(copy)
            s.flush()
            for prop_name, value in s.execute(select(DeadProperty.name, DeadProperty.value)
                                              .where(DeadProperty.item_id == item.id)).all():
                s.add(DeadProperty(item_id=copy.id, name=prop_name, value=value))
            copy.modseq = self._record_change(s, target, new_name, None, "created" if existing is None else "modified")
            s.flush()
            return copy, existing is None

    def item_properties(self, collection_id: int, actor: int | None = None) -> dict[str, dict[str, str]]:
        """Dead properties of every item of the collection that has some: item name → {Clark name: XML}."""
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            self.access.authorize(s, actor, "read", coll)
            result: dict[str, dict[str, str]] = {}
            rows = s.execute(select(Item.name, DeadProperty.name, DeadProperty.value)
                             .join(DeadProperty, DeadProperty.item_id == Item.id)
                             .where(Item.collection_id == coll.id))
            for item_name, name, value in rows:
                result.setdefault(item_name, {})[name] = value
            return result

    def calendar_candidates(self, collection_id: int, start: dt.datetime | None, end: dt.datetime | None,
                            component: str | None = None, actor: int | None = None) -> list[Item]:
        """Items that may overlap [start, end): the indexed span overlaps the range (widened for
        floating times), or the item recurs or has no indexed start — those the caller filters exactly."""
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            self.access.authorize(s, actor, "read", coll)
            query = select(Item).where(Item.collection_id == coll.id)
            if component:
                query = query.where(or_(Item.component == component.upper(), Item.component == ""))
            overlap = []
            if end is not None:
                overlap.append(Item.dtstart < end + FLOATING_SLACK)
            if start is not None:
                overlap.append(or_(Item.dtend > start - FLOATING_SLACK,
                                   and_(Item.dtend.is_(None), Item.dtstart >= start - FLOATING_SLACK)))
            if overlap:
                query = query.where(or_(Item.recurring.is_(True), Item.dtstart.is_(None), and_(*overlap)))
            return list(s.scalars(query.order_by(Item.name)))

    def busy_candidates(self, owner_id: int, start: dt.datetime, end: dt.datetime,
                        actor: int | None = None) -> list[tuple[Item, bytes]] | None:
        """Events of the owner's calendars that may overlap [start, end), with their bodies, for a
        free/busy answer (RFC 6638 §5): only calendars ``actor`` holds ``freebusy`` on count, and the
        caller must reveal nothing of them but busy time. Candidates come from the indexed start/end
        columns (recurring items always, for the caller to expand); None when ``actor`` may see the
        free/busy time of none of the owner's calendars."""
        with self.read() as s:
            visible = []
            for coll in s.scalars(select(Collection).where(Collection.owner_id == owner_id,
                                                           Collection.kind == "calendar")):
                try:
                    self.access.authorize(s, actor, "freebusy", coll)
                except PermissionDenied:
                    continue
                visible.append(coll.id)
            if not visible:
                return None
            rows = list(s.scalars(select(Item).where(
                Item.collection_id.in_(visible), or_(Item.component == "VEVENT", Item.recurring.is_(True)),
                or_(Item.recurring.is_(True), and_(Item.dtstart < end + FLOATING_SLACK,
                                                    or_(Item.dtend > start - FLOATING_SLACK,
                                                        and_(Item.dtend.is_(None),
                                                             Item.dtstart >= start - FLOATING_SLACK)))))
                .order_by(Item.id)))
        return [(row, self.read_body(row)) for row in rows]  # type: ignore[attr-defined]

    def contact_candidates(self, collection_id: int, condition: ContactCondition,
                           actor: int | None = None) -> list[Item]:
        """vCards that may match an addressbook-query, from the vCard search columns.

        ``condition`` is ``("match", PROPERTY, match_type, text)`` (one text-match, see
        :mod:`kantoor.storage.card_search`), ``("defined", PROPERTY, bool)`` or
        ``("and"|"or", [conditions])``. A superset: the caller applies the exact RFC 6352
        §10.5 test; cards stored before they were indexed (NULL columns) are always in."""
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None:
                raise NotFound(f"no collection {collection_id}")
            self.access.authorize(s, actor, "read", coll)
            query = select(Item).where(Item.collection_id == coll.id, _contact_clause(condition))
            return list(s.scalars(query.order_by(Item.name)))

    def index_unindexed_cards(self, collection_id: int) -> int:
        """Fill the vCard search columns of cards stored before they existed (migration 0003 could
        index only cards kept inline); returns how many. The bodies do not change, so neither do
        ETags nor the change log."""
        with self.read() as s:
            rows = list(s.scalars(select(Item).where(Item.collection_id == collection_id, Item.component == "VCARD",
                                                     Item.card_fn.is_(None))))
            bodies = {row.id: self.read_body(row) for row in rows}  # type: ignore[attr-defined]
        if not rows:
            return 0
        with self.write() as s:
            for item_id, body in bodies.items():
                columns = card_columns(index_vcard(body))
                s.execute(update(Item).where(Item.id == item_id, Item.card_fn.is_(None)).values(**columns))
        return len(rows)


ContactCondition = tuple[object, ...]


def _contact_clause(condition: ContactCondition):  # type: ignore[no-untyped-def]
    op = condition[0]
    if op in ("and", "or"):
        operands = condition[1]
        assert isinstance(operands, list) and operands
        parts = [_contact_clause(c) for c in operands]
        return and_(*parts) if op == "and" else or_(*parts)
    column = getattr(Item, COLUMN_OF_PROPERTY[str(condition[1])])
    if op == "defined":
        return or_(column.is_(None), (column != "") if condition[2] else (column == ""))
    if op == "match":
        pattern = like_pattern(str(condition[3]), str(condition[2]))
        return or_(column.is_(None), column.contains(pattern, autoescape=True))
    raise ValueError(f"unknown contact condition {op!r}")
