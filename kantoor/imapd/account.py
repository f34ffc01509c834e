"""The logged-in account as Twisted's IAccount: namespaces, mailbox listing, selection, creation, deletion.

Three namespaces (RFC 2342), "/" as the hierarchy delimiter everywhere:

* personal, ``""``: the account's own mailboxes, named by their collection paths;
* other users, ``Other Users/<owner login>/<folder>``: folders another account
  shared with this one or with one of its groups (a Grant, e.g. from SETACL);
* shared, ``Shared/<group>``: each group's mailbox (its INBOX) and
  ``Shared/<group>/<folder>`` below it, for every member. The ACL engine decides
  what a member may do there (the group administrator and the members given
  write may write; the others read).

Every method that touches the Store returns a Deferred from a worker thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.mail.interfaces import IAccountIMAP, INamespacePresenter
from zope.interface import implementer

from kantoor.imapd.mailbox import SelectedMailbox
from kantoor.imapd.worker_threads import in_thread
from kantoor.storage import AlreadyExists, NotFound, Store
from kantoor.storage.models import Account, Collection

DELIMITER = "/"
OTHER_USERS = "Other Users"
SHARED = "Shared"


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


def strict_name(raw: bytes) -> str:
    """A mailbox name to store, from the wire: modified UTF-7 in its one canonical form (RFC 3501 5.1.3).

    Twisted's decoder also takes what the RFC forbids (an unterminated ``&...``
    shift, printable ASCII in base64 like ``&AGE-``, 8-bit bytes); such a name
    would list differently than it was created, so it is refused (ValueError).
    """
    try:
        name = raw.decode("imap4-utf-7")
    except Exception:  # noqa: BLE001 - Twisted raises its own IllegalMailboxEncoding, or UnicodeError
        raise ValueError("mailbox name is not modified UTF-7") from None
    if name.encode("imap4-utf-7") != raw:
        raise ValueError("mailbox name is not in canonical modified UTF-7")
    return name


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


def list_entries(named: list[tuple[str, Collection | None]]) -> list[ListEntry]:
    """LIST entries for (name, collection) pairs; a None collection is a \\Noselect level (a namespace, a user)."""
    names = [name for name, _ in named]
    entries = []
    for name, coll in named:
        has_children = any(other.startswith(name + DELIMITER) for other in names)
        attributes = ["\\HasChildren" if has_children else "\\HasNoChildren"]
        if coll is None:
            attributes.insert(0, "\\Noselect")
        elif coll.special_use.startswith("\\"):
            attributes.append(coll.special_use)
        entries.append(ListEntry(name, attributes))
    return entries


@implementer(IAccountIMAP, INamespacePresenter)
class MailAccount:
    def __init__(self, store: Store, account: Account) -> None:
        self.store = store
        self.account = account
        self.principal_id = account.principal_id

    # -- names ------------------------------------------------------------------------
    def _shared_names(self) -> list[tuple[str, Collection | None]]:
        """Blocking: every shared mailbox by its name in the other-users and shared namespaces, with the
        \\Noselect levels above them."""
        named: list[tuple[str, Collection | None]] = []
        for shared in self.store.shared_mailboxes(self.principal_id):
            path = shared.collection.path
            if shared.namespace == "group":
                root = f"{SHARED}{DELIMITER}{shared.owner_name}"
                name = root if path == "INBOX" else f"{root}{DELIMITER}{path}"
            else:
                name = f"{OTHER_USERS}{DELIMITER}{shared.owner_name}{DELIMITER}{path}"
            named.append((name, shared.collection))
        # Every level above a shared mailbox is listed, \Noselect where it is not itself one we may open
        # (the namespace roots, an owner's login, a parent folder that was not shared).
        present = {name for name, _ in named}
        levels = {name[:i] for name in present for i, c in enumerate(name) if c == DELIMITER}
        named += [(level, None) for level in sorted(levels - present)]
        return named

    def locate(self, name: str) -> tuple[int, str]:
        """Blocking: (owner principal, collection path) of a mailbox name in any namespace (NotFound if none)."""
        name = canonical_name(name)
        head, _, rest = name.partition(DELIMITER)
        if head == SHARED and rest:
            group_name, _, path = rest.partition(DELIMITER)
            group = self.store.get_group(group_name)
            if group is None:
                raise NotFound(f"no group {group_name}")
            return group.principal_id, canonical_name(path) if path else "INBOX"
        if head == OTHER_USERS and rest:
            login, _, path = rest.partition(DELIMITER)
            owner = self.store.get_account(login)
            if owner is None or not path:
                raise NotFound(f"no shared mailbox {name}")
            return owner.principal_id, canonical_name(path)
        return self.principal_id, name

    def find(self, name: str) -> Collection:
        """Blocking: the mailbox collection called ``name`` (NotFound if none; PermissionDenied without read)."""
        owner, path = self.locate(name)
        return self.store.mailbox(owner, path, self.principal_id)

    # -- listing ----------------------------------------------------------------------
    def listMailboxes(self, ref: str, wildcard: str) -> Deferred:  # noqa: N802
        if wildcard == "":
            # LIST "" "" asks for the delimiter and the root (RFC 3501 6.3.8).
            return succeed([("", ListEntry("", ["\\Noselect"]))])
        return in_thread(self.list_blocking, ref, wildcard)

    def list_blocking(self, ref: str, wildcard: str) -> list[tuple[str, ListEntry]]:
        """Blocking: (name, entry) of every mailbox in every namespace that ``ref`` + ``wildcard`` matches."""
        if wildcard == "":
            return [("", ListEntry("", ["\\Noselect"]))]
        pattern = mailbox_pattern(ref, wildcard)
        own = self.store.list_collections(self.principal_id, "mailbox", self.principal_id)
        named: list[tuple[str, Collection | None]] = [(c.path, c) for c in own]
        named += self._shared_names()
        return [(e.name, e) for e in list_entries(named) if pattern.match(e.name)]

    def isSubscribed(self, name: str) -> bool:  # noqa: N802
        return True  # every mailbox the account can see counts as subscribed

    def subscribe(self, name: str) -> bool:
        return True

    def unsubscribe(self, name: str) -> bool:
        return True

    # -- selection ----------------------------------------------------------------------
    def select(self, name: str, readwrite: bool | int = True) -> Deferred:
        """Fires with a :class:`SelectedMailbox`, or None when there is no such mailbox.

        SELECT (``readwrite``) claims the mailbox's new messages as \\Recent for this
        session (RFC 3501 2.3.2); EXAMINE does not.
        """

        def work() -> SelectedMailbox | None:
            with self.store.request_scope():  # the look-up and the mailbox's reads share one session
                try:
                    coll = self.find(name)
                except NotFound:
                    return None
                snapshot = self.store.open_mailbox(coll.id, self.principal_id, claim_recent=bool(readwrite))
            return SelectedMailbox(self.store, self.principal_id, snapshot, bool(readwrite))

        return in_thread(work)

    def status(self, name: str) -> Deferred:
        """STATUS values (RFC 3501 6.3.10) from the Store's counts; fires with None when there is no such mailbox."""

        def work() -> dict[str, int] | None:
            try:
                coll = self.find(name)
            except NotFound:
                return None
            return self.store.mailbox_status(coll.id, self.principal_id)

        return in_thread(work)

    # -- creation and deletion --------------------------------------------------------------
    def create(self, name: str) -> Deferred:
        """CREATE, making missing parents too (RFC 3501 6.3.3); fails with AlreadyExists.

        Also below a group's mailbox (``Shared/<group>/…``) or a folder shared with
        write access: the ACL engine decides.
        """
        validate_name(canonical_name(name))

        def work() -> None:
            owner, path = self.locate(name)
            validate_name(path)
            parts = path.split(DELIMITER)
            for depth in range(1, len(parts)):
                try:
                    self.store.create_collection(owner, "mailbox", DELIMITER.join(parts[:depth]),
                                                 actor=self.principal_id)
                except AlreadyExists:
                    pass
            self.store.create_collection(owner, "mailbox", path, actor=self.principal_id)

        return in_thread(work)

    def delete(self, name: str) -> Deferred:
        def work() -> None:
            owner, path = self.locate(name)
            self.store.delete_mailbox(owner, path, actor=self.principal_id)

        return in_thread(work)

    # -- INamespacePresenter (RFC 2342) --------------------------------------------------------
    def getPersonalNamespaces(self) -> list[list[str]]:  # noqa: N802
        return [["", DELIMITER]]

    def getOtherUsersNamespaces(self) -> list[list[str]]:  # noqa: N802
        return [[OTHER_USERS + DELIMITER, DELIMITER]]

    def getSharedNamespaces(self) -> list[list[str]]:  # noqa: N802
        return [[SHARED + DELIMITER, DELIMITER]]

    def getUserNamespaces(self) -> list[list[str]]:  # noqa: N802
        return self.getOtherUsersNamespaces()
