"""The logged-in account as Twisted's IAccount: mailbox listing, selection, creation, deletion.

Every method that touches the Store returns a Deferred from a worker thread.
Mailbox names are the collection paths of the account's ``mailbox`` collections,
with "/" as the hierarchy delimiter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThread
from twisted.mail.interfaces import IAccountIMAP, INamespacePresenter
from zope.interface import implementer

from kantoor.imapd.mailbox import SelectedMailbox
from kantoor.storage import AlreadyExists, NotFound, Store
from kantoor.storage.models import Account, Collection

DELIMITER = "/"


def mailbox_pattern(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 3501 6.3.8 LIST wildcards: ``*`` matches anything, ``%`` anything but the delimiter."""
    full = reference + pattern if not pattern.startswith(DELIMITER) else pattern
    regex = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in full)
    # INBOX is case-insensitive; everything else is matched exactly.
    return re.compile(f"(?:{regex})\\Z", re.IGNORECASE if full.upper().startswith("INBOX") else 0)


def validate_name(path: str) -> None:
    """A mailbox name we store: no empty levels, no wildcards or control characters, modest length."""
    if not path or "//" in path or len(path) > 512 or any(c in path for c in "*%") \
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise ValueError("invalid mailbox name")


def canonical_name(name: str) -> str:
    name = name.strip(DELIMITER)
    return "INBOX" if name.upper() == "INBOX" else name


@dataclass
class ListEntry:
    """A LIST response line: the mailbox attributes (RFC 3501, RFC 3348 CHILDREN, RFC 6154 SPECIAL-USE)."""

    name: str
    attributes: list[str]

    def getFlags(self) -> list[str]:  # noqa: N802 (Twisted's name)
        return self.attributes

    def getHierarchicalDelimiter(self) -> str:  # noqa: N802
        return DELIMITER


def list_entries(collections: list[Collection]) -> list[ListEntry]:
    paths = {c.path for c in collections}
    entries = []
    for coll in collections:
        has_children = any(p.startswith(coll.path + DELIMITER) for p in paths)
        attributes = ["\\HasChildren" if has_children else "\\HasNoChildren"]
        if coll.special_use.startswith("\\"):
            attributes.append(coll.special_use)
        entries.append(ListEntry(coll.path, attributes))
    return entries


@implementer(IAccountIMAP, INamespacePresenter)
class MailAccount:
    def __init__(self, store: Store, account: Account) -> None:
        self.store = store
        self.account = account
        self.principal_id = account.principal_id

    # -- listing ----------------------------------------------------------------------
    def listMailboxes(self, ref: str, wildcard: str) -> Deferred:  # noqa: N802
        if wildcard == "":
            # LIST "" "" asks for the delimiter and the root (RFC 3501 6.3.8).
            return succeed([("", ListEntry("", ["\\Noselect"]))])
        pattern = mailbox_pattern(ref, wildcard)

        def work() -> list[tuple[str, ListEntry]]:
            collections = self.store.list_collections(self.principal_id, "mailbox", self.principal_id)
            return [(e.name, e) for e in list_entries(collections) if pattern.match(e.name)]

        return deferToThread(work)

    def isSubscribed(self, name: str) -> bool:  # noqa: N802
        return True  # every mailbox of the account counts as subscribed

    def subscribe(self, name: str) -> bool:
        return True

    def unsubscribe(self, name: str) -> bool:
        return True

    # -- selection ----------------------------------------------------------------------
    def select(self, name: str, readwrite: bool | int = True) -> Deferred:
        """Fires with a :class:`SelectedMailbox`, or None when there is no such mailbox."""

        def work() -> SelectedMailbox | None:
            try:
                coll = self.store.mailbox(self.principal_id, canonical_name(name), self.principal_id)
            except NotFound:
                return None
            items = self.store.list_messages(coll.id, self.principal_id)
            return SelectedMailbox(self.store, self.principal_id, coll, items, bool(readwrite))

        return deferToThread(work)

    def find(self, name: str) -> Collection:
        """Blocking: the mailbox collection called ``name`` (NotFound if none)."""
        return self.store.mailbox(self.principal_id, canonical_name(name), self.principal_id)

    # -- creation and deletion --------------------------------------------------------------
    def create(self, name: str) -> Deferred:
        """CREATE, making missing parents too (RFC 3501 6.3.3); fails with AlreadyExists."""
        path = canonical_name(name)
        validate_name(path)

        def work() -> None:
            parts = path.split(DELIMITER)
            for depth in range(1, len(parts)):
                try:
                    self.store.create_collection(self.principal_id, "mailbox", DELIMITER.join(parts[:depth]),
                                                 actor=self.principal_id)
                except AlreadyExists:
                    pass
            self.store.create_collection(self.principal_id, "mailbox", path, actor=self.principal_id)

        return deferToThread(work)

    def delete(self, name: str) -> Deferred:
        def work() -> None:
            self.store.delete_mailbox(self.principal_id, canonical_name(name), actor=self.principal_id)

        return deferToThread(work)

    # -- INamespacePresenter (RFC 2342) --------------------------------------------------------
    def getPersonalNamespaces(self) -> list[list[str]]:  # noqa: N802
        return [["", DELIMITER]]

    def getSharedNamespaces(self) -> None:  # noqa: N802
        return None

    def getUserNamespaces(self) -> None:  # noqa: N802
        return None
