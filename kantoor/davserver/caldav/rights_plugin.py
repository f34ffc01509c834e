"""Radicale rights plugin answering from Kantoor's ACL engine.

Radicale asks for letters per path before it touches storage: ``R``/``W`` on
plain collections (root, principals), ``r``/``w`` on calendars and address
books (items inherit their collection's letters). The owner has every right
on their own tree; on someone else's collection the letters are what the Store
grants the actor (``kantoor.auth.rights.RADICALE_LETTERS``, the one mapping),
so the Store — which checks again on every call — and Radicale never disagree.
"""

from __future__ import annotations

from radicale import config as radicale_config
from radicale import pathutils
from radicale import rights as radicale_rights

from kantoor.auth.rights import RADICALE_LETTERS
from kantoor.davserver.caldav.bindings import bound_collection_id, dav_rights, shared_by_id
from kantoor.davserver.caldav.context import DavContext, current_request
from kantoor.davserver.caldav.scheduling import is_schedule_box

DAV_KINDS = ("calendar", "addressbook")


class Rights(radicale_rights.BaseRights):
    def __init__(self, configuration: radicale_config.Configuration, context: DavContext) -> None:
        super().__init__(configuration)
        self._context = context

    def authorization(self, user: str, user_groups: set, path: str) -> str:
        state = current_request()
        if not user or state.account is None or user != state.account.login:
            return ""
        parts = [p for p in pathutils.strip_path(pathutils.sanitize_path(path)).split("/") if p]
        if not parts:
            return "R"
        if len(parts) != 2:
            return "RW" if parts == [user] else ""  # other principals are not browsable
        cache = state.rights_cache
        key = "/".join(parts)
        if key not in cache:
            collection_id = bound_collection_id(parts[1])
            if parts[0] == user and is_schedule_box(parts[1]):
                cache[key] = "R"  # readable; POST to the outbox is answered by ``scheduling``
            elif parts[0] == user and collection_id is None:
                cache[key] = "rw"  # one's own calendars and address books
            elif parts[0] == user:
                cache[key] = self._bound_letters(collection_id, state.actor)  # type: ignore[arg-type]
            else:
                cache[key] = self._granted_letters(parts[0], parts[1], state.actor)
        return cache[key]

    def _bound_letters(self, collection_id: int, actor: int) -> str:
        """Letters for a collection bound into the actor's home: the actor's rights on the original."""
        shared = shared_by_id(self._context, collection_id)
        if shared is None:
            return ""
        rights = dav_rights(shared.collection, shared.rights)
        letters: set[str] = set()
        for right in rights:
            letters |= set(RADICALE_LETTERS.get(right, ""))
        return "".join(sorted(letters))

    def _granted_letters(self, login: str, name: str, actor: int | None) -> str:
        store = self._context.store
        owner = store.get_account(login)
        if owner is None or owner.login != login:
            return ""
        letters: set[str] = set()
        for right in ("read", "write"):
            for kind in DAV_KINDS:
                held = store.list_collections(owner.principal_id, kind, actor, right=right)
                if any(c.path == name for c in held):
                    letters |= set(RADICALE_LETTERS[right])
        return "".join(sorted(letters))
