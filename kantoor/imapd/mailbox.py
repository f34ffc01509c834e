"""The selected mailbox of one IMAP session, over the Store.

The message list (UID order = sequence order) is read once at SELECT in a worker
thread and kept in memory; every later Store call (flags, expunge, refresh) runs
in a worker thread too, and the in-memory view is updated only in callbacks on
the reactor, so it never changes under Twisted's feet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.mail.imap4 import MessageSet, ReadOnlyMailbox
from twisted.mail.interfaces import ICloseableMailboxIMAP, IMailboxIMAP
from zope.interface import implementer

from kantoor.imapd.message import StoredMessage
from kantoor.storage import Store
from kantoor.storage.imap_state import FlagUpdate
from kantoor.storage.models import Collection, Item

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


@dataclass
class Changes:
    """What a refresh found: to be sent as untagged EXPUNGE, EXISTS and FETCH FLAGS."""

    expunged: list[int] = field(default_factory=list)  # sequence numbers, highest first
    vanished: list[int] = field(default_factory=list)  # the same messages' UIDs (QRESYNC's VANISHED)
    exists: int | None = None
    flags: dict[int, list[str]] = field(default_factory=dict)  # sequence number → flags
    modseqs: dict[int, int] = field(default_factory=dict)  # sequence number → MODSEQ (RFC 7162)


@dataclass
class StoreResult:
    """What STORE did: new flags by sequence number, and messages UNCHANGEDSINCE refused (RFC 7162 3.1.3)."""

    flags: dict[int, list[str]] = field(default_factory=dict)
    modified: list[int] = field(default_factory=list)  # sequence numbers, or UIDs for UID STORE


@implementer(IMailboxIMAP, ICloseableMailboxIMAP)
class SelectedMailbox:
    def __init__(self, store: Store, actor: int, collection: Collection, items: list[Item], writeable: bool) -> None:
        self.storage = store
        self.actor = actor
        self.collection = collection
        self.messages = [StoredMessage(item) for item in items]
        self.writeable = writeable
        self.listeners: list[object] = []

    @property
    def id(self) -> int:
        return self.collection.id

    # -- IMailboxIMAPInfo / IMailboxIMAP -------------------------------------------
    def getFlags(self) -> list[str]:  # noqa: N802 (Twisted's names)
        return list(SYSTEM_FLAGS)

    def getHierarchicalDelimiter(self) -> str:  # noqa: N802
        return "/"

    def getUIDValidity(self) -> int:  # noqa: N802
        return int(self.collection.uidvalidity)

    def getUIDNext(self) -> int:  # noqa: N802
        return int(self.collection.uidnext)

    def getUID(self, message: int) -> int:  # noqa: N802
        return self.messages[message - 1].uid

    def getMessageCount(self) -> int:  # noqa: N802
        return len(self.messages)

    def getRecentCount(self) -> int:  # noqa: N802
        return 0  # \Recent is not tracked (it is optional state; IMAP4rev2 dropped it)

    def getUnseenCount(self) -> int:  # noqa: N802
        return sum(1 for m in self.messages if "\\Seen" not in m.flags)

    def firstUnseen(self) -> int | None:  # noqa: N802
        for seq, message in enumerate(self.messages, 1):
            if "\\Seen" not in message.flags:
                return seq
        return None

    def isWriteable(self) -> bool:  # noqa: N802
        return self.writeable

    def destroy(self) -> None:
        raise NotImplementedError

    def requestStatus(self, names: Iterable[str]) -> dict[str, int]:  # noqa: N802
        values = {
            "MESSAGES": self.getMessageCount, "RECENT": self.getRecentCount, "UIDNEXT": self.getUIDNext,
            "UIDVALIDITY": self.getUIDValidity, "UNSEEN": self.getUnseenCount,
            "HIGHESTMODSEQ": lambda: self.highest_modseq,
        }
        return {name.upper(): values[name.upper()]() for name in names if name.upper() in values}

    def addListener(self, listener: object) -> None:  # noqa: N802
        self.listeners.append(listener)

    def removeListener(self, listener: object) -> None:  # noqa: N802
        if listener in self.listeners:
            self.listeners.remove(listener)

    def close(self) -> None:
        self.listeners.clear()

    def addMessage(self, message, flags=(), date=None):  # type: ignore[no-untyped-def]  # noqa: N802
        raise NotImplementedError("APPEND is handled by the server, not the mailbox")

    # -- message selection ------------------------------------------------------------
    def select(self, messages: MessageSet, uid: bool) -> list[tuple[int, StoredMessage]]:
        """(sequence number, message) pairs a sequence set or UID set names, in order."""
        if messages.last is MessageSet._empty:  # "*" means the highest number in use
            highest = (self.messages[-1].uid if uid else len(self.messages)) if self.messages else 0
            messages.last = highest
        result = []
        for seq, message in enumerate(self.messages, 1):
            if (message.uid if uid else seq) in messages:
                result.append((seq, message))
        return result

    def fetch(self, messages: MessageSet, uid: bool) -> list[tuple[int, StoredMessage]]:
        return self.select(messages, uid)

    # -- writes (each returns a Deferred; results are applied on the reactor) --------------
    def store(self, messages: MessageSet, flags: list[str], mode: int, uid: bool,
              unchanged_since: int | None = None) -> Deferred:
        """STORE; fires with a :class:`StoreResult` (sequence numbers of changed and of refused messages)."""
        if not self.writeable:
            raise ReadOnlyMailbox()
        chosen = self.select(messages, uid)
        uids = [m.uid for _, m in chosen]
        how = {1: "add", -1: "remove", 0: "set"}[mode]
        d = deferToThread(self.storage.store_flags, self.id, uids, flags, how, self.actor, unchanged_since)

        def applied(update: FlagUpdate) -> StoreResult:
            result = StoreResult()
            refused = set(update.modified)
            for seq, message in chosen:
                new = update.updated.get(message.uid) or update.unchanged.get(message.uid)
                if new is not None:
                    message.item.flags = " ".join(new[0])
                    message.item.modseq = new[1]
                    result.flags[seq] = new[0]
                elif message.uid in refused:
                    result.modified.append(message.uid if uid else seq)
            self._note_modseq(max((m for _, m in update.updated.values()), default=0))
            return result

        return d.addCallback(applied)

    def mark_seen(self, uids: list[int]) -> Deferred:
        """Set \\Seen on messages a FETCH read (RFC 3501 6.4.5), keeping the in-memory view current."""
        d = deferToThread(self.storage.store_flags, self.id, uids, ["\\Seen"], "add", self.actor)

        def applied(update: FlagUpdate) -> None:
            for message in self.messages:
                if message.uid in update.updated:
                    flags, modseq = update.updated[message.uid]
                    message.item.flags = " ".join(flags)
                    message.item.modseq = modseq
            self._note_modseq(max((m for _, m in update.updated.values()), default=0))

        return d.addCallback(applied)

    def expunge(self, uids: list[int] | None = None) -> Deferred:
        """Remove messages flagged \\Deleted (of ``uids`` only, for UID EXPUNGE) in one transaction;
        fires with the expunged (sequence number, UID) pairs, highest first."""
        if not self.writeable:
            raise ReadOnlyMailbox()
        d = deferToThread(self.storage.expunge_messages, self.id, uids, self.actor)
        return d.addCallback(self.forget)

    def forget(self, gone_uids: list[int]) -> list[tuple[int, int]]:
        """Drop messages this session removed (EXPUNGE, MOVE); (sequence number, UID) pairs, highest first."""
        gone = set(gone_uids)
        expunged = [(seq, m.uid) for seq, m in enumerate(self.messages, 1) if m.uid in gone]
        self.messages = [m for m in self.messages if m.uid not in gone]
        return sorted(expunged, reverse=True)

    def _note_modseq(self, modseq: int) -> None:
        if modseq > self.collection.modseq:
            self.collection.modseq = modseq

    @property
    def highest_modseq(self) -> int:
        """HIGHESTMODSEQ (RFC 7162 3.1.2): the mailbox's modseq as this session last saw it (at least 1)."""
        return max(1, int(self.collection.modseq))

    def refresh(self) -> Deferred:
        """Re-read the mailbox (other sessions, SMTP delivery); fires with :class:`Changes`."""

        def work() -> tuple[Collection, list[Item]]:
            return self.storage.get_collection(self.id), self.storage.list_messages(self.id, self.actor)

        return deferToThread(work).addCallback(self._apply_refresh)

    def _apply_refresh(self, result: tuple[Collection, list[Item]]) -> Changes:
        collection, items = result
        changes = Changes()
        by_uid = {int(i.uid or 0): i for i in items}
        kept: list[StoredMessage] = []
        for seq, message in enumerate(self.messages, 1):
            if message.uid not in by_uid:
                changes.expunged.append(seq)
                changes.vanished.append(message.uid)
            else:
                kept.append(message)
        changes.expunged.sort(reverse=True)
        known = {m.uid for m in kept}
        for seq, message in enumerate(kept, 1):
            fresh = by_uid[message.uid]
            if fresh.flags != message.item.flags or fresh.modseq != message.item.modseq:
                message.item.flags = fresh.flags
                message.item.modseq = fresh.modseq
                changes.flags[seq] = message.flags
                changes.modseqs[seq] = int(fresh.modseq)
        new = [StoredMessage(i) for i in items if int(i.uid or 0) not in known]
        kept.extend(new)
        self.messages = kept
        if new or changes.expunged:
            changes.exists = len(kept)
        self.collection = collection
        return changes
