"""Shared mail: the mailboxes of others a user may read (group mailboxes, folders shared with them or a group),
and whose plan sets a mailbox owner's capacity."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from kantoor.storage.errors import NotFound, PermissionDenied
from kantoor.storage.models import Account, Collection, Grant, Group, Membership
from kantoor.storage.transactions import StoreBase


@dataclass
class SharedMailbox:
    """A mailbox someone else owns that a user may read: a group's ("group") or one shared by an account ("user")."""

    namespace: str  # group|user
    owner_name: str  # the group's name or the owner's login
    collection: Collection


class SharedMailMixin(StoreBase):
    # ------------------------------------------------------------------ shared mail (groups, shared folders)
    def shared_mailboxes(self, actor: int) -> list[SharedMailbox]:
        """Mailboxes of others that ``actor`` may read: their groups' mailboxes, and folders other accounts
        shared with them or with one of their groups (a share of a folder covers the folders below it)."""
        found: list[SharedMailbox] = []
        with self.read() as s:
            account = s.scalar(select(Account).where(Account.principal_id == actor))
            if account is None:
                return []
            groups = list(s.execute(select(Group.name, Group.principal_id).join(
                Membership, Membership.group_id == Group.id).where(Membership.account_id == account.id)
                .order_by(Group.name)))
            for name, principal in groups:
                for coll in s.scalars(select(Collection).where(Collection.owner_id == principal,
                                                               Collection.kind == "mailbox").order_by(Collection.path)):
                    found.append(SharedMailbox("group", name, coll))
            grantees = [actor, *(principal for _, principal in groups)]
            roots = list(s.scalars(select(Collection).join(Grant, Grant.collection_id == Collection.id).where(
                Grant.grantee_id.in_(grantees), Collection.kind == "mailbox", Collection.owner_id != actor)))
            seen: set[int] = set()
            for root in roots:
                login = s.scalar(select(Account.login).where(Account.principal_id == root.owner_id))
                if login is None:
                    continue  # a group's mailbox: already listed under its group
                below = s.scalars(select(Collection).where(
                    Collection.owner_id == root.owner_id, Collection.kind == "mailbox",
                    Collection.path.startswith(root.path + "/", autoescape=True)))
                for coll in [root, *below]:
                    if coll.id in seen:
                        continue
                    seen.add(coll.id)
                    try:
                        self.access.authorize(s, actor, "read", coll)
                    except PermissionDenied:
                        continue
                    found.append(SharedMailbox("user", login, coll))
        found.sort(key=lambda m: (m.namespace, m.owner_name, m.collection.path))
        return found

    def plan_holder(self, owner_id: int) -> Account:
        """The account whose plan sets ``owner_id``'s capacities: the account itself, or a group's administrator
        (PRODUCT.md: a group gets its administrator's per-tool capacity)."""
        with self.read() as s:
            account = s.scalar(select(Account).where(Account.principal_id == owner_id))
            if account is None:
                group = s.scalar(select(Group).where(Group.principal_id == owner_id))
                if group is None:
                    raise NotFound(f"principal {owner_id} owns nothing")
                account = s.get(Account, group.admin_id)
            if account is None:
                raise NotFound(f"no account for principal {owner_id}")
            return account
