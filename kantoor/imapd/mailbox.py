"""The selected mailbox of one IMAP session, over the Store.

The session keeps only what numbering needs: the UID list (sequence number n is
``uids[n-1]``), the modseq it has reported up to, and its \\Recent UIDs. Flags,
sizes, envelopes … are read from the Store for exactly the messages a command
names (one query per command), and what changed is read from the change log
(:meth:`Store.mailbox_changes`), so no command costs per message of the mailbox
beyond what its answer holds. Store calls run in worker threads; the in-memory
state changes only in callbacks on the reactor, so it never changes under
Twisted's feet.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.mail.imap4 import MessageSet, ReadOnlyMailbox
from twisted.mail.interfaces import ICloseableMailboxIMAP, IMailboxIMAP
from zope.interface import implementer

from kantoor.imapd.message import StoredMessage
from kantoor.imapd.worker_threads import in_thread
from kantoor.storage import Store
from kantoor.storage.imap_state import FlagUpdate
from kantoor.storage.mail_flags import is_private_view
from kantoor.storage.mail_views import MailboxDelta, MailboxSnapshot, MessageRow

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


@dataclass
class Changes:
    """What a refresh found: to be sent as untagged EXPUNGE, EXISTS, RECENT and FETCH FLAGS."""

    expunged: list[int] = field(default_factory=list)  # sequence numbers, highest first
    vanished: list[int] = field(default_factory=list)  # the same messages' UIDs (QRESYNC's VANISHED)
    exists: int | None = None
    recent: int | None = None
    flags: dict[int, list[str]] = field(default_factory=dict)  # sequence number → flags
    modseqs: dict[int, int] = field(default_factory=dict)  # sequence number → MODSEQ (RFC 7162)


@dataclass
class StoreResult:
    """What STORE did: new flags and modseqs by sequence number, and messages UNCHANGEDSINCE refused."""

    flags: dict[int, list[str]] = field(default_factory=dict)
    modseqs: dict[int, int] = field(default_factory=dict)
    modified: list[int] = field(default_factory=list)  # sequence numbers, or UIDs for UID STORE


@implementer(IMailboxIMAP, ICloseableMailboxIMAP)
class SelectedMailbox:
    def __init__(self, store: Store, actor: int, snapshot: MailboxSnapshot, readwrite: bool) -> None:
        self.storage = store
        self.actor = actor
        self.collection = snapshot.collection
        self.uids: list[int] = snapshot.uids
        self.rights = snapshot.rights
        self.private = is_private_view(snapshot.collection, actor)
        # RFC 4314 4: a reader who may only keep their own \Seen still gets a read-write session.
        self.may_write = "write" in snapshot.rights
        self.writeable = bool(readwrite) and (self.may_write or (self.private and "read" in snapshot.rights))
        self.seen_modseq = int(snapshot.collection.modseq)  # changes up to here are reported
        # The UID list is sorted: the \Recent ones are one slice of it.
        self.recent: set[int] = set(snapshot.uids[bisect.bisect_right(snapshot.uids, snapshot.recent_from):
                                                  bisect.bisect_right(snapshot.uids, snapshot.recent_to)]) \
            if snapshot.recent_to > snapshot.recent_from else set()
        self.unseen = snapshot.unseen
        self.first_unseen_uid = snapshot.first_unseen_uid
        # (UID → modseq) of flag changes this session made and already answered: a refresh skips them.
        self.answered: dict[int, int] = {}
        self.listeners: list[object] = []

    @property
    def id(self) -> int:
        return self.collection.id

    # -- numbering -------------------------------------------------------------------
    def seq_of(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.uids, uid)
        return index + 1 if index < len(self.uids) and self.uids[index] == uid else None

    def permanent_flags(self) -> list[str]:
        if not self.writeable:
            return []
        if self.may_write:
            return [*SYSTEM_FLAGS, "\\*"]
        return ["\\Seen"]  # RFC 4314 "s" without "w": the reader's own \Seen only

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
        return self.uids[message - 1]

    def getMessageCount(self) -> int:  # noqa: N802
        return len(self.uids)

    def getRecentCount(self) -> int:  # noqa: N802
        return len(self.recent)

    def getUnseenCount(self) -> int:  # noqa: N802
        return self.unseen

    def firstUnseen(self) -> int | None:  # noqa: N802
        return self.seq_of(self.first_unseen_uid) if self.first_unseen_uid is not None else None

    def isWriteable(self) -> bool:  # noqa: N802
        return self.writeable

    def destroy(self) -> None:
        raise NotImplementedError

    def requestStatus(self, names: Iterable[str]) -> dict[str, int]:  # noqa: N802
        raise NotImplementedError("STATUS reads the Store directly")

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
    def select(self, messages: MessageSet, uid: bool) -> list[tuple[int, int]]:
        """(sequence number, UID) pairs a sequence set or UID set names, in order; costs the set's size."""
        uids = self.uids
        if not uids:
            return []
        # "*" means the highest number in use. Setting ``last`` re-sorts and merges every range
        # (MessageSet.clean), so only a set that holds a "*" gets it: 100 single UIDs were sorted twice.
        if messages.last is MessageSet._empty and any(low is None or high is None for low, high in messages.ranges):
            messages.last = uids[-1] if uid else len(uids)
        result: list[tuple[int, int]] = []
        append, count = result.append, len(uids)
        at, previous = 0, 0  # ranges come sorted: a search starts where the one before ended
        for low, high in messages.ranges:
            if uid:
                if low == high:  # a single UID (a syncing client's UID FETCH names many): one bisection
                    if low < previous:  # (not sorted after all: search everything)
                        at = 0
                    previous = low
                    at = index = bisect.bisect_left(uids, low, at)
                    if index < count and uids[index] == low:
                        append((index + 1, low))
                    continue
                start, stop = bisect.bisect_left(uids, low), bisect.bisect_right(uids, high)
            else:
                start, stop = max(low, 1) - 1, min(high, count)
            result.extend(zip(range(start + 1, stop + 1), uids[start:stop], strict=True))
        return result

    def rows(self, chosen: list[tuple[int, int]], cached: bool = False,
             dates: bool = True, bodies: bool = False) -> list[tuple[int, MessageRow]]:
        """Blocking: the Store rows of ``chosen`` (one query), paired with their sequence numbers."""
        uids = sorted(uid for _, uid in chosen)
        found = self.storage.message_rows(self.id, uids, self.actor, cached=cached, dates=dates, bodies=bodies)
        by_uid = {row.uid: row for row in found}
        return [(seq, by_uid[uid]) for seq, uid in chosen if uid in by_uid]

    def message(self, row: MessageRow) -> StoredMessage:
        return StoredMessage(self.id, self.actor, row, row.uid in self.recent)

    def fetch(self, messages: MessageSet, uid: bool) -> Deferred:
        """Twisted's FETCH iterates this: (sequence number, message) pairs, rows read in one query."""
        chosen = self.select(messages, uid)
        return in_thread(self.rows, chosen, True).addCallback(
            lambda pairs: [(seq, self.message(row)) for seq, row in pairs])

    # -- writes (each returns a Deferred; results are applied on the reactor) --------------
    def store(self, messages: MessageSet, flags: list[str], mode: int, uid: bool,
              unchanged_since: int | None = None) -> Deferred:
        """STORE; fires with a :class:`StoreResult` (sequence numbers of changed and of refused messages)."""
        if not self.writeable:
            raise ReadOnlyMailbox()
        chosen = self.select(messages, uid)
        uids = [u for _, u in chosen]
        how = {1: "add", -1: "remove", 0: "set"}[mode]
        d = in_thread(self.storage.store_flags, self.id, uids, flags, how, self.actor, unchanged_since)

        def applied(update: FlagUpdate) -> StoreResult:
            result = StoreResult()
            refused = set(update.modified)
            for seq, message_uid in chosen:
                new = update.updated.get(message_uid) or update.unchanged.get(message_uid)
                if new is not None:
                    result.flags[seq] = [*new[0], "\\Recent"] if message_uid in self.recent else new[0]
                    result.modseqs[seq] = new[1]
                elif message_uid in refused:
                    result.modified.append(message_uid if uid else seq)
            self.note_own_changes(update)
            return result

        return d.addCallback(applied)

    def note_own_changes(self, update: FlagUpdate) -> None:
        """Remember flag changes this session already told its client about (STORE, FETCH's implicit \\Seen)."""
        for message_uid, (_, modseq) in update.updated.items():
            self.answered[message_uid] = modseq
            if modseq > self.collection.modseq:
                self.collection.modseq = modseq

    def expunge(self, uids: list[int] | None = None) -> Deferred:
        """Remove messages flagged \\Deleted (of ``uids`` only, for UID EXPUNGE) in one transaction;
        fires with the expunged (sequence number, UID) pairs, highest first."""
        if not self.writeable:
            raise ReadOnlyMailbox()
        d = in_thread(self.storage.expunge_messages, self.id, uids, self.actor)
        return d.addCallback(self.forget)

    def forget(self, gone_uids: list[int]) -> list[tuple[int, int]]:
        """Drop messages this session removed (EXPUNGE, MOVE); (sequence number, UID) pairs, highest first."""
        pairs = [(seq, uid) for uid in set(gone_uids) if (seq := self.seq_of(uid)) is not None]
        pairs.sort(reverse=True)
        for seq, uid in pairs:  # highest first, so the lower sequence numbers stay valid
            del self.uids[seq - 1]
            self.recent.discard(uid)
        return pairs

    @property
    def highest_modseq(self) -> int:
        """HIGHESTMODSEQ (RFC 7162 3.1.2): the mailbox's modseq as this session last saw it (at least 1)."""
        return max(1, int(self.collection.modseq))

    def refresh(self) -> Deferred:
        """What other sessions (any process), SMTP delivery and this session's own writes changed; fires with
        :class:`Changes`. Costs what changed since the last refresh, read from the change log."""
        known_last = self.uids[-1] if self.uids else 0
        told, self.answered = self.answered, {}
        d = in_thread(self.storage.mailbox_changes, self.id, self.seen_modseq, known_last, self.actor,
                          self.writeable, told)
        return d.addCallback(self._apply_refresh)

    def _apply_refresh(self, delta: MailboxDelta) -> Changes:
        changes = Changes()
        for seq, uid in self.forget(delta.expunged):
            changes.expunged.append(seq)
            changes.vanished.append(uid)
        # A message expunged meanwhile by this session was already forgotten; a new one may be gone again.
        known_last = self.uids[-1] if self.uids else 0
        new = [u for u in delta.new_uids if u > known_last]
        if delta.recent_to > delta.recent_from:
            self.recent.update(u for u in new if delta.recent_from < u <= delta.recent_to)
        for row in delta.changed:
            seq = self.seq_of(row.uid)
            if seq is not None:
                changes.flags[seq] = [*row.flags, "\\Recent"] if row.uid in self.recent else row.flags
                changes.modseqs[seq] = row.modseq
        self.uids.extend(new)
        if new or changes.expunged:
            changes.exists = len(self.uids)
        if new:
            changes.recent = len(self.recent)
        self.collection = delta.collection
        self.seen_modseq = max(self.seen_modseq, int(delta.collection.modseq))
        return changes
