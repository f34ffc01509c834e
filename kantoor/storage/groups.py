"""Groups and memberships (a group owns a space of its own, like an account)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kantoor.storage.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
)
from kantoor.storage.models import (
    Account,
    Group,
    Membership,
    Principal,
)
from kantoor.storage.transactions import StoreBase


class GroupsMixin(StoreBase):
    # ------------------------------------------------------------------ groups
    def create_group(self, name: str, admin_login: str) -> Group:
        name = name.strip()
        if not name or "/" in name or len(name) > 200:
            raise ValueError(f"not a valid group name: {name!r}")
        with self.write() as s:
            admin = self._account(s, admin_login)
            if s.scalar(select(Group.id).where(Group.name == name)) is not None:
                raise AlreadyExists(f"group {name} exists")
            self.quota.check_new_group(s, admin)
            principal = Principal(kind="group")
            s.add(principal)
            s.flush()
            group = Group(name=name, admin_id=admin.id, principal_id=principal.id)
            s.add(group)
            s.flush()
            s.add(Membership(group_id=group.id, account_id=admin.id, can_write=True))
            self._create_owner_space(s, principal.id, personal=False)
            return group

    def _group(self, s: Session, name: str) -> Group:
        group = s.scalar(select(Group).where(Group.name == name))
        if group is None:
            raise NotFound(f"no group {name}")
        return group

    def get_group(self, name: str) -> Group | None:
        with self.read() as s:
            return s.scalar(select(Group).where(Group.name == name))

    def list_groups(self) -> list[tuple[Group, str, int]]:
        """Every group with its administrator's login and its member count."""
        with self.read() as s:
            rows = s.execute(
                select(Group, Account.login, func.count(Membership.account_id))
                .join(Account, Account.id == Group.admin_id)
                .join(Membership, Membership.group_id == Group.id, isouter=True)
                .group_by(Group.id, Account.login)
                .order_by(Group.name)
            )
            return [(g, login, int(n)) for g, login, n in rows]

    def add_member(self, group_name: str, login: str, can_write: bool = False) -> None:
        with self.write() as s:
            group = self._group(s, group_name)
            account = self._account(s, login)
            if s.get(Membership, (group.id, account.id)) is not None:
                raise AlreadyExists(f"{account.login} is already a member of {group.name}")
            self.quota.check_new_member(s, group)
            s.add(Membership(group_id=group.id, account_id=account.id, can_write=can_write))

    def remove_member(self, group_name: str, login: str) -> None:
        with self.write() as s:
            group = self._group(s, group_name)
            account = self._account(s, login)
            if group.admin_id == account.id:
                raise PermissionDenied(
                    "the administrator cannot leave the group; make someone else administrator first", "admin")
            membership = s.get(Membership, (group.id, account.id))
            if membership is None:
                raise NotFound(f"{account.login} is not a member of {group.name}")
            s.delete(membership)
