"""The ACL engine: who may do what to which collection or item.

Private by default: a resource is reachable only by its owner until a grant says
otherwise. The only rights group membership gives by itself are the ones
PRODUCT.md lists: members see each other's free/busy (``freebusy`` on calendars)
and may drop files into each other's Drop folder (``bind``); in a group's own
space the administrator has every right, members read, and members the
administrator allowed to write also write.

Grants on a folder hold for every folder below it; a grant on an item holds for
that item only. The engine never knows a protocol: frontends map rights to their
notation through :mod:`kantoor.auth.rights`.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from kantoor.auth.rights import IMPLIES, implied
from kantoor.storage import PermissionDenied
from kantoor.storage.models import Account, Collection, Grant, Group, Item, Membership

ALL = IMPLIES["admin"]


class AccessControl:
    """Implements the Store's AccessPolicy protocol."""

    def _account(self, s: Session, principal_id: int) -> Account | None:
        return s.scalar(select(Account).where(Account.principal_id == principal_id))

    def _group_principals(self, s: Session, account_id: int) -> list[int]:
        return list(s.scalars(select(Group.principal_id).join(Membership, Membership.group_id == Group.id)
                              .where(Membership.account_id == account_id)))

    def _share_a_group(self, s: Session, account_id: int, owner_principal: int) -> bool:
        owner = self._account(s, owner_principal)
        if owner is None:
            return False
        mine = select(Membership.group_id).where(Membership.account_id == account_id)
        return s.scalar(select(Membership.group_id).where(
            Membership.account_id == owner.id, Membership.group_id.in_(mine)).limit(1)) is not None

    def owner_rights(self, s: Session, actor: int | None, owner_id: int) -> frozenset[str]:
        """Rights ``actor`` has over everything ``owner_id`` owns, before grants."""
        if actor is None or actor == owner_id:
            return ALL
        account = self._account(s, actor)
        if account is None:
            return frozenset()
        group = s.scalar(select(Group).where(Group.principal_id == owner_id))
        if group is None:
            return frozenset()
        if group.admin_id == account.id:
            return ALL
        membership = s.get(Membership, (group.id, account.id))
        if membership is None:
            return frozenset()
        return IMPLIES["write"] if membership.can_write else IMPLIES["read"]

    def effective_rights(self, s: Session, actor: int | None, collection: Collection,
                         item: Item | None = None) -> frozenset[str]:
        rights = set(self.owner_rights(s, actor, collection.owner_id))
        if rights >= ALL or actor is None:
            return frozenset(rights)
        account = self._account(s, actor)
        if account is None:
            return frozenset(rights)
        grantees = [actor, *self._group_principals(s, account.id)]
        # The collection and its ancestors (a folder share covers its subfolders).
        chain = [collection.id]
        parent_id = collection.parent_id
        while parent_id is not None and len(chain) < 256:
            chain.append(parent_id)
            parent_id = s.scalar(select(Collection.parent_id).where(Collection.id == parent_id))
        conditions = [Grant.collection_id.in_(chain)]
        if item is not None and item.id is not None:
            conditions.append(Grant.item_id == item.id)
        granted = set(s.scalars(select(Grant.right).where(Grant.grantee_id.in_(grantees), or_(*conditions))))
        rights |= implied(granted)
        if self._share_a_group(s, account.id, collection.owner_id):
            if collection.kind == "calendar":
                rights.add("freebusy")
            if collection.kind == "folder" and collection.special_use == "drop":
                rights.add("bind")
        return frozenset(rights)

    # -- AccessPolicy protocol
    def authorize(self, session: Session, actor: int | None, right: str, collection: Collection,
                  item: Item | None = None) -> None:
        if right not in self.effective_rights(session, actor, collection, item):
            raise PermissionDenied(f"{right} access denied", right)

    def authorize_owner(self, session: Session, actor: int | None, owner_id: int) -> None:
        if "write" not in self.owner_rights(session, actor, owner_id):
            raise PermissionDenied("only the owner may create or delete top-level collections", "write")
