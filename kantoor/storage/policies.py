"""The seams where the ACL engine (auth) and the quota engine (quota) plug into the Store.

Storage sits below both, so it only defines what it needs from them; the
application (``kantoor.core``) passes the real engines in.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import update
from sqlalchemy.orm import Session

from kantoor.storage.errors import PermissionDenied
from kantoor.storage.models import Account, Collection, Group, Item, Usage


class AccessPolicy(Protocol):
    """Decides rights; implemented by ``kantoor.auth.acl``. ``actor`` None is the system."""

    def authorize(
        self, session: Session, actor: int | None, right: str, collection: Collection, item: Item | None = None
    ) -> None: ...

    def authorize_owner(self, session: Session, actor: int | None, owner_id: int) -> None: ...


class QuotaPolicy(Protocol):
    """Capacities; implemented by ``kantoor.quota``. Raises QuotaExceeded."""

    def reserve(self, session: Session, owner_id: int, tool: str, delta: int, *,
                over_capacity: bool = False) -> None: ...

    def check_new_group(self, session: Session, admin: Account) -> None: ...

    def check_new_member(self, session: Session, group: Group) -> None: ...


class SystemOnly:
    """Default policy when none is plugged in: only the system may act (private by default)."""

    def authorize(self, session, actor, right, collection, item=None):  # type: ignore[no-untyped-def]
        if actor is not None:
            raise PermissionDenied("no access policy configured", right)

    def authorize_owner(self, session, actor, owner_id):  # type: ignore[no-untyped-def]
        if actor is not None:
            raise PermissionDenied("no access policy configured", "admin")


class Unlimited:
    def reserve(self, session, owner_id, tool, delta, *, over_capacity=False):  # type: ignore[no-untyped-def]
        session.execute(
            update(Usage).where(Usage.owner_id == owner_id, Usage.tool == tool).values(bytes=Usage.bytes + delta)
        )

    def check_new_group(self, session, admin):  # type: ignore[no-untyped-def]
        return None

    def check_new_member(self, session, group):  # type: ignore[no-untyped-def]
        return None


