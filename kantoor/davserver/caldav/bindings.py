"""Calendars and address books of others, bound into an account's home.

A client finds calendars by listing the calendar-home-set (``/dav/<login>/``), so
what others share with an account — and its groups' calendar, contacts and
members book — must appear there. Each such collection is bound at
``/dav/<login>/shared-<collection id>/`` (the id is stable for the collection's
life; the display name tells whose it is). The binding exists only while the
ACL engine lets the account read the collection, so a revoked grant or a left
group removes it at once. The name prefix is reserved: MKCALENDAR/MKCOL of such
a name is refused, as is one of the scheduling boxes' names.

Rights on a bound collection are the account's rights on the original (a
read-only share cannot be written through the binding), except that a group's
members book is read-only for everyone: it mirrors the members' profiles.
"""

from __future__ import annotations

import re

from kantoor.davserver.caldav.context import DavContext, current_request
from kantoor.storage.models import Collection
from kantoor.storage.shared_calendars import MEMBERS_BOOK, SharedCollection

PREFIX = "shared-"
_BOUND = re.compile(rf"^{PREFIX}([0-9]{{1,18}})$")
READ_ONLY_RIGHTS = frozenset({"read", "freebusy"})


def binding_name(collection_id: int) -> str:
    return f"{PREFIX}{collection_id}"


def bound_collection_id(name: str) -> int | None:
    match = _BOUND.match(name)
    return int(match.group(1)) if match else None


def is_reserved(name: str) -> bool:
    """Names a home keeps for bindings and for the scheduling boxes (``scheduling``)."""
    return name.startswith(PREFIX) or name in ("schedule-outbox", "schedule-inbox")


def is_members_book(collection: Collection) -> bool:
    return collection.kind == "addressbook" and collection.special_use == MEMBERS_BOOK


def dav_rights(collection: Collection, rights: frozenset[str]) -> frozenset[str]:
    """What DAV lets the holder of ``rights`` do: never write the members book."""
    return rights & READ_ONLY_RIGHTS if is_members_book(collection) else rights


def title(shared: SharedCollection) -> str:
    """The display name of a binding: whose it is, then its own name."""
    name = shared.collection.display_name or shared.collection.path
    return f"{shared.owner_label}: {name}"


_ALL = -1  # key in the request's share memo: "the full list was fetched"


def shared_with_me(context: DavContext) -> list[SharedCollection]:
    """Everything shared with the logged-in account, fetched once per request."""
    state = current_request()
    memo = state.shares
    if _ALL not in memo:
        found = context.store.shared_collections(state.actor)
        memo.clear()
        memo.update({shared.collection.id: shared for shared in found})
        memo[_ALL] = True
    return [shared for key, shared in memo.items() if key != _ALL]  # type: ignore[misc]


def shared_by_id(context: DavContext, collection_id: int) -> SharedCollection | None:
    """One collection shared with the logged-in account (None: not, or no longer), once per request."""
    state = current_request()
    memo = state.shares
    if collection_id not in memo and _ALL not in memo:
        memo[collection_id] = context.store.shared_collection(state.actor, collection_id)
    return memo.get(collection_id)  # type: ignore[return-value]


def forget_shares() -> None:
    """After the members books were refreshed in this request: look them up again."""
    current_request().shares.clear()
