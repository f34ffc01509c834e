"""Plans, usage accounting and capacity checks.

``reserve()`` runs inside the caller's write transaction and refuses a write that
would take usage past the capacity with a single conditional UPDATE
(``… SET bytes = bytes + d WHERE bytes + d <= capacity``): the database row lock
makes two racing writers see each other's reservation, so together they can never
exceed the plan. Shrinking (negative delta) always succeeds. The capacity is read
in that same UPDATE from the ``plans`` table (synchronised from the settings at
start, see ``sync_catalogue``) through the owner's account row, so a plan change
takes effect at the next write in every process, with no cache to invalidate.
"""

from __future__ import annotations

import functools
from typing import NoReturn

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from kantoor.config import FEATURES, TOOLS, PlanSettings, Settings
from kantoor.storage import QuotaExceeded, Store
from kantoor.storage import raw_statements as raw
from kantoor.storage.models import Account, Group, Membership, Plan, Usage

# The statements of reserve(), built once (every item write runs one): constructing them
# per call cost more than executing them (cProfile of a WebDAV PUT). They name table
# columns, not ORM attributes: a statement carrying ORM annotations is copied and its
# cache key recomputed on every execution, and there is no identity map to synchronise
# (nothing keeps Usage objects in a write session).
_ACCOUNTS, _GROUPS, _PLANS = Account.__table__.c, Group.__table__.c, Plan.__table__.c  # columns
_USAGE = Usage.__table__
_OWNER = bindparam("owner")
# The plan that sets an owner's capacity: an account's own, or a group administrator's.
_OWNER_PLAN_NAME = select(func.coalesce(
    select(_ACCOUNTS.plan).where(_ACCOUNTS.principal_id == _OWNER).scalar_subquery(),
    select(_ACCOUNTS.plan).join(Group.__table__, _GROUPS.admin_id == _ACCOUNTS.id)
    .where(_GROUPS.principal_id == _OWNER).scalar_subquery(),
))
_DELTA = bindparam("delta")
_USAGE_ROW = (_USAGE.c.owner_id == _OWNER, _USAGE.c.tool == bindparam("tool_name"))
_GROW = {
    tool: update(_USAGE)
    .where(*_USAGE_ROW, _USAGE.c.bytes + _DELTA <= select(_PLANS[f"{tool}_bytes"])
           .where(_PLANS.name == _OWNER_PLAN_NAME.scalar_subquery()).scalar_subquery())
    .values(bytes=_USAGE.c.bytes + _DELTA)
    for tool in TOOLS
}
# Counted without the capacity condition: the server's own short notices to a full mailbox (see reserve()).
_ADD = update(_USAGE).where(*_USAGE_ROW).values(bytes=_USAGE.c.bytes + _DELTA)
# Shrinking always succeeds and never goes below zero.
_SHRINK = update(_USAGE).where(*_USAGE_ROW).values(
    bytes=case((_USAGE.c.bytes + _DELTA < 0, 0), else_=_USAGE.c.bytes + _DELTA))


@functools.cache
def _raw_statements(dialect: Dialect) -> tuple[dict[str, raw.RawStatement], raw.RawStatement, raw.RawStatement]:
    """_GROW (per tool), _SHRINK and _ADD compiled once for ``dialect``: every mail delivery and file write runs
    one, and through ``session.execute`` SQLAlchemy's per-statement work (~60–90 µs) cost more than SQLite's."""
    return {tool: raw.RawStatement(statement, dialect) for tool, statement in _GROW.items()}, \
        raw.RawStatement(_SHRINK, dialect), raw.RawStatement(_ADD, dialect)


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

    # -- QuotaPolicy protocol
    def reserve(self, session: Session, owner_id: int, tool: str, delta: int, *, over_capacity: bool = False) -> None:
        """Count ``delta`` bytes more (or fewer) for ``owner_id``'s ``tool``; QuotaExceeded if that would pass the
        capacity. ``over_capacity``: count it even then (the server's own short notices, which must reach a full
        mailbox: the warning that it is full, a delivery report)."""
        if delta == 0:
            return
        params = {"owner": owner_id, "tool_name": tool, "delta": delta}
        if session.autoflush:
            # What session.execute did first: rows still pending in the session (a Usage row just
            # added, say) must be in the database before the UPDATE looks for them.
            session.flush()
        grow, shrink, add = _raw_statements(session.get_bind().dialect)
        if delta < 0:
            raw.execute(session, shrink, params)
            return
        if over_capacity and raw.execute(session, add, params).rowcount == 1:
            return
        # One statement: the capacity is read from the plans table in the same UPDATE, so
        # a plan change (by any process) counts from the next write on, with nothing cached.
        # It runs on the DBAPI cursor of the session's own transaction (raw_statements): same
        # SQL, same transaction, so a rollback undoes it like any other statement of the write.
        if raw.execute(session, grow[tool], params).rowcount != 1:
            self._refuse(session, owner_id, tool, delta)

    def _refuse(self, session: Session, owner_id: int, tool: str, delta: int) -> NoReturn:
        """Raise QuotaExceeded with the numbers that refused the write (the rare path: may take queries)."""
        plan_name = session.scalar(_OWNER_PLAN_NAME, {"owner": owner_id})
        if plan_name is None:
            raise LookupError(f"principal {owner_id} owns nothing")
        capacity = session.scalar(select(getattr(Plan, f"{tool}_bytes")).where(Plan.name == plan_name))
        used = session.scalar(select(Usage.bytes).where(Usage.owner_id == owner_id, Usage.tool == tool)) or 0
        raise QuotaExceeded(tool, int(used), int(capacity or 0), delta)

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
