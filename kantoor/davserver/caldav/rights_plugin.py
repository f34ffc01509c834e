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
from kantoor.davserver.caldav.context import DavContext, current_request

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
        if parts[0] == user:
            return {1: "RW", 2: "rw"}.get(len(parts), "")
        if len(parts) != 2:
            return ""  # other principals are not browsable; their shared collections are
        cache = state.rights_cache
        key = "/".join(parts)
        if key not in cache:
            cache[key] = self._granted_letters(parts[0], parts[1], state.actor)
        return cache[key]

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
