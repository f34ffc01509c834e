"""Calendars and address books others share with an account, and each group's "members" book.

- :meth:`SharedCalendarsMixin.shared_collections` lists the calendars and address books
  of other owners that an account may read right now: shared with it or with one of
  its groups by a grant, or owned by one of its groups (the group calendar and
  contacts, and the members book). The ACL engine decides each one at the time of
  the call, so a revoked grant or a left group is gone from the list at once.
- :meth:`SharedCalendarsMixin.refresh_members_book` keeps a group's read-only
  "members" address book (PRODUCT.md "Groups and sharing": every member sees each
  other member's name, organisation, e-mail address and photo) equal to the
  current members and their profiles. It is a real collection with real items,
  so ETags, sync tokens and the change log work as for any address book; it is
  refreshed when read (a write happens only when something changed).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from kantoor.storage.errors import NotFound, PermissionDenied
from kantoor.storage.indexing import index_vcard
from kantoor.storage.models import Account, Collection, Grant, Group, Item, Membership, utcnow
from kantoor.storage.transactions import StoreBase

MEMBERS_BOOK = "members"  # path and special_use of the members book in a group's space
DAV_KINDS = ("calendar", "addressbook")


@dataclass(frozen=True)
class SharedCollection:
    collection: Collection
    owner_label: str  # the owning account's display name or the group's name
    group_owned: bool
    rights: frozenset[str]  # what the account holds on it (always read; see _held_rights)


class SharedCalendarsMixin(StoreBase):
    def shared_collections(self, actor: int) -> list[SharedCollection]:
        """Calendars and address books owned by others that ``actor`` may read (see the module docstring)."""
        with self.read() as s:
            account = s.scalar(select(Account).where(Account.principal_id == actor))
            if account is None:
                return []
            groups = dict(s.execute(select(Group.principal_id, Group.name)
                                    .join(Membership, Membership.group_id == Group.id)
                                    .where(Membership.account_id == account.id)).all())
            granted = select(Grant.collection_id).where(Grant.grantee_id.in_([actor, *groups]),
                                                        Grant.collection_id.is_not(None))
            query = select(Collection).where(
                Collection.kind.in_(DAV_KINDS), Collection.owner_id != actor,
                or_(Collection.id.in_(granted), Collection.owner_id.in_(list(groups))))
            found: list[SharedCollection] = []
            labels: dict[int, str] = {}
            for coll in s.scalars(query.order_by(Collection.id)):
                rights = self._held_rights(s, actor, coll)
                if rights is None:
                    continue
                if coll.owner_id not in labels:
                    owner = s.scalar(select(Account).where(Account.principal_id == coll.owner_id))
                    labels[coll.owner_id] = (owner.display_name if owner is not None
                                             else groups.get(coll.owner_id) or _group_name(s, coll.owner_id))
                found.append(SharedCollection(coll, labels[coll.owner_id], coll.owner_id in groups, rights))
            return found

    def _held_rights(self, s, actor: int, coll: Collection) -> frozenset[str] | None:  # type: ignore[no-untyped-def]
        """The rights ``actor`` holds on a collection it may read (None when it may not), asking the
        ACL engine only what can differ: read implies freebusy, write implies bind."""
        def holds(right: str) -> bool:
            try:
                self.access.authorize(s, actor, right, coll)
            except PermissionDenied:
                return False
            return True

        if not holds("read"):
            return None
        if holds("write"):
            return frozenset({"freebusy", "read", "write", "bind"} | ({"admin"} if holds("admin") else set()))
        return frozenset({"freebusy", "read"} | ({"bind"} if holds("bind") else set()))

    def shared_collection(self, actor: int, collection_id: int) -> SharedCollection | None:
        """One of :meth:`shared_collections` by id (None when ``actor`` may not read it)."""
        with self.read() as s:
            coll = s.get(Collection, collection_id)
            if coll is None or coll.kind not in DAV_KINDS or coll.owner_id == actor:
                return None
            rights = self._held_rights(s, actor, coll)
            if rights is None:
                return None
            owner = s.scalar(select(Account).where(Account.principal_id == coll.owner_id))
            if owner is not None:
                return SharedCollection(coll, owner.display_name, False, rights)
            return SharedCollection(coll, _group_name(s, coll.owner_id), True, rights)

    def member_groups(self, actor: int) -> list[Group]:
        with self.read() as s:
            return list(s.scalars(select(Group).join(Membership, Membership.group_id == Group.id)
                                  .join(Account, Account.id == Membership.account_id)
                                  .where(Account.principal_id == actor).order_by(Group.id)))

    # ------------------------------------------------------------------ the members book
    def refresh_members_book(self, group_id: int) -> Collection:
        """Create or update the group's members book so it shows exactly the current members."""
        try:
            return self._refresh_members_book(group_id)
        except IntegrityError:
            # Another process created the book at the same moment (PostgreSQL): its row is there now.
            return self._refresh_members_book(group_id)

    def _refresh_members_book(self, group_id: int) -> Collection:
        with self.read() as s:
            group = s.get(Group, group_id)
            if group is None:
                raise NotFound(f"no group {group_id}")
            book = _members_book(s, group.principal_id)
            wanted = _member_cards(s, group.id)
            stored = ({} if book is None else
                      dict(s.execute(select(Item.name, Item.etag).where(Item.collection_id == book.id)).all()))
        if book is not None and stored == {name: etag for name, (etag, _) in wanted.items()}:
            return book
        with self.write() as s:
            book = _members_book(s, group.principal_id)
            if book is None:
                book = Collection(owner_id=group.principal_id, kind="addressbook", path=MEMBERS_BOOK,
                                  special_use=MEMBERS_BOOK, display_name="Members")
                s.add(book)
                s.flush()
            book = self._locked_collection(s, book.id)
            for item in list(s.scalars(select(Item).where(Item.collection_id == book.id))):
                if item.name not in wanted:
                    if item.blob_sha256:
                        self._release_blobs(s, select(Item.blob_sha256).where(Item.id == item.id))
                    s.delete(item)
                    self._record_change(s, book, item.name, None, "deleted")
                elif item.etag == wanted[item.name][0]:
                    del wanted[item.name]
            for name, (_etag, body) in wanted.items():
                item = s.scalar(select(Item).where(Item.collection_id == book.id, Item.name == name))
                self._write_member_card(s, book, item, name, body)
            return book

    def _write_member_card(self, s, book: Collection, item: Item | None, name: str,  # type: ignore[no-untyped-def]
                           body: bytes) -> None:
        stored, sha, _data = self._store_body(body, None)
        created = item is None
        if item is None:
            item = Item(collection_id=book.id, name=name, created_at=utcnow())
        elif item.blob_sha256:
            self._release_blobs(s, select(Item.blob_sha256).where(Item.id == item.id))
        # Members' profiles are not the group's data: they count against nobody's capacity.
        self._apply_body(s, item, stored, sha, "text/vcard", index_vcard(body))
        if created:
            s.add(item)
        item.modseq = self._record_change(s, book, name, None, "created" if created else "modified")


def _group_name(s, principal_id: int) -> str:  # type: ignore[no-untyped-def]
    return s.scalar(select(Group.name).where(Group.principal_id == principal_id)) or ""


def _members_book(s, group_principal: int) -> Collection | None:  # type: ignore[no-untyped-def]
    return s.scalar(select(Collection).where(Collection.owner_id == group_principal,
                                             Collection.kind == "addressbook", Collection.path == MEMBERS_BOOK))


def _member_cards(s, group_id: int) -> dict[str, tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    """Item name → (ETag, vCard) for every member, as the Store would compute the ETag."""
    cards: dict[str, tuple[str, bytes]] = {}
    members = s.scalars(select(Account).join(Membership, Membership.account_id == Account.id)
                        .where(Membership.group_id == group_id).order_by(Account.id))
    for account in members:
        body = member_vcard(account)
        cards[f"{account.id}.vcf"] = (f'"{hashlib.sha256(body).hexdigest()[:40]}"', body)
    return cards


def _text(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace(",", "\\,").replace(";", "\\;"))


def _photo_type(photo: bytes) -> str:
    if photo.startswith(b"\x89PNG"):
        return "PNG"
    if photo.startswith(b"GIF8"):
        return "GIF"
    return "JPEG"


def member_vcard(account: Account) -> bytes:
    """The vCard 3.0 a group shows of a member: name, first name, organisation, e-mail and photo."""
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"UID:urn:kantoor:account:{account.id}",
             f"FN:{_text(account.display_name)}",
             f"N:{_text(account.last_name)};{_text(account.first_name)};;;",
             f"EMAIL;TYPE=INTERNET:{account.login}"]
    if account.organisation:
        lines.append(f"ORG:{_text(account.organisation)}")
    if account.photo:
        encoded = base64.b64encode(account.photo).decode("ascii")
        line = f"PHOTO;ENCODING=b;TYPE={_photo_type(account.photo)}:{encoded}"
        lines.append("\r\n ".join(line[i:i + 74] for i in range(0, len(line), 74)))
    lines.append("END:VCARD")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
