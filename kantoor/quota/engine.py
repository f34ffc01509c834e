"""Plans, usage accounting and capacity checks.

``reserve()`` runs inside the caller's write transaction and refuses a write that
would take usage past the capacity with a single conditional UPDATE
(``… SET bytes = bytes + d WHERE bytes + d <= capacity``): the database row lock
makes two racing writers see each other's reservation, so together they can never
exceed the plan. Shrinking (negative delta) always succeeds.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kantoor.config import FEATURES, TOOLS, PlanSettings, Settings
from kantoor.storage import QuotaExceeded, Store
from kantoor.storage.models import Account, Group, Membership, Plan, Usage


class PlanNotFound(LookupError):
    pass


class QuotaEngine:
    """Implements the Store's QuotaPolicy protocol, plus plan and feature look-ups."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- catalogue
    def sync_catalogue(self, store: Store) -> None:
        """Make the plans table match the settings (plans in use are never dropped)."""
        with store.write() as s:
            for name, plan in self.settings.plans.items():
                row = s.get(Plan, name) or Plan(name=name)
                row.title = plan.title or name
                for tool in TOOLS:
                    setattr(row, f"{tool}_bytes", plan.capacity(tool))
                row.max_groups = plan.max_groups
                row.max_members = plan.max_members
                for feature in FEATURES:
                    setattr(row, feature, plan.allows(feature))
                s.merge(row)

    def plan(self, name: str) -> PlanSettings:
        try:
            return self.settings.plans[name]
        except KeyError:
            raise PlanNotFound(f"no plan {name!r} (plans: {', '.join(sorted(self.settings.plans))})") from None

    def allows(self, account: Account, feature: str) -> bool:
        """Feature gate: may this account use ``feature`` (imap, smtp, webdav, caldav)?"""
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r}")
        return self.plan(account.plan).allows(feature)

    def _owner_plan(self, s: Session, owner_id: int) -> PlanSettings:
        account = s.scalar(select(Account).where(Account.principal_id == owner_id))
        if account is None:
            # A group's capacity comes from its administrator's plan.
            group = s.scalar(select(Group).where(Group.principal_id == owner_id))
            if group is None:
                raise LookupError(f"principal {owner_id} owns nothing")
            account = s.get(Account, group.admin_id)
            assert account is not None
        return self.plan(account.plan)

    # -- QuotaPolicy protocol
    def reserve(self, session: Session, owner_id: int, tool: str, delta: int) -> None:
        if delta == 0:
            return
        if delta < 0:
            session.execute(update(Usage).where(Usage.owner_id == owner_id, Usage.tool == tool)
                            .values(bytes=func.max(Usage.bytes + delta, 0) if session.bind.dialect.name == "sqlite"
                                    else func.greatest(Usage.bytes + delta, 0)))
            return
        capacity = self._owner_plan(session, owner_id).capacity(tool)
        result = session.execute(
            update(Usage)
            .where(Usage.owner_id == owner_id, Usage.tool == tool, Usage.bytes + delta <= capacity)
            .values(bytes=Usage.bytes + delta)
        )
        if result.rowcount != 1:
            used = session.scalar(select(Usage.bytes).where(Usage.owner_id == owner_id, Usage.tool == tool)) or 0
            raise QuotaExceeded(tool, int(used), capacity, delta)

    def check_new_group(self, session: Session, admin: Account) -> None:
        plan = self.plan(admin.plan)
        count = session.scalar(select(func.count(Group.id)).where(Group.admin_id == admin.id)) or 0
        if count >= plan.max_groups:
            raise QuotaExceeded("groups", int(count), plan.max_groups, 1)

    def check_new_member(self, session: Session, group: Group) -> None:
        admin = session.get(Account, group.admin_id)
        assert admin is not None
        plan = self.plan(admin.plan)
        count = session.scalar(select(func.count()).select_from(Membership).where(Membership.group_id == group.id)) or 0
        if count >= plan.max_members:
            raise QuotaExceeded("members", int(count), plan.max_members, 1)

    # -- reporting
    def report(self, store: Store, account: Account) -> dict[str, tuple[int, int]]:
        """(used, capacity) per tool for an account's private space."""
        plan = self.plan(account.plan)
        used = store.usage(account.principal_id)
        return {tool: (used.get(tool, 0), plan.capacity(tool)) for tool in TOOLS}
