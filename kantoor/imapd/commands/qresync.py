"""QRESYNC (RFC 7162 3.2): SELECT/EXAMINE with (QRESYNC (uidvalidity modseq [known-uids])) answers
VANISHED (EARLIER) for what went away and FETCH for what changed, from the Store's change log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.mail.imap4 import IllegalClientResponse, IllegalIdentifierError, MessageSet, parseIdList, parseNestedParens

from kantoor.imapd.commands.enable import uid_set
from kantoor.imapd.mailbox import SelectedMailbox
from kantoor.imapd.worker_threads import in_thread
from kantoor.storage.mail_search import ModseqAtLeast


@dataclass
class Resync:
    uidvalidity: int
    modseq: int
    known: MessageSet | None = None


@dataclass
class SelectParams:
    condstore: bool = False
    qresync: Resync | None = None


def parse_select_params(line: bytes) -> tuple[SelectParams, bytes]:
    """SELECT/EXAMINE parameters (RFC 4466 2.2): ``(CONDSTORE)`` or ``(QRESYNC (v m [uids [seq-match]]))``."""
    params = SelectParams()
    if not line.strip():
        return params, b""
    try:
        parsed = parseNestedParens(line)
    except Exception:  # noqa: BLE001 - Twisted raises several kinds for bad nesting
        raise IllegalClientResponse("malformed SELECT parameters") from None
    if len(parsed) != 1 or not isinstance(parsed[0], list):
        raise IllegalClientResponse("SELECT parameters must be one parenthesised list")
    items = list(parsed[0])
    while items:
        name = items.pop(0)
        if not isinstance(name, bytes):
            raise IllegalClientResponse("bad SELECT parameter")
        if name.upper() == b"CONDSTORE":
            params.condstore = True
        elif name.upper() == b"QRESYNC" and items and isinstance(items[0], list):
            spec = items.pop(0)
            try:
                known = parseIdList(spec[2]) if len(spec) > 2 and isinstance(spec[2], bytes) else None
                params.qresync = Resync(int(spec[0]), int(spec[1]), known)
            except (ValueError, IndexError, TypeError, IllegalIdentifierError):
                raise IllegalClientResponse("bad QRESYNC parameter") from None
        else:
            raise IllegalClientResponse("unknown SELECT parameter")
    return params, b""


class QresyncCommand:
    def _resync(self, mbox: SelectedMailbox, spec: Resync) -> Deferred | None:
        """After SELECT's untagged data: what vanished and what changed since the client's modseq."""
        if spec.uidvalidity != mbox.getUIDValidity():
            return None  # a different mailbox by now: the client must resync from scratch
        store = self.context.store

        def work() -> tuple[list[int], list]:
            vanished = store.vanished_since(mbox.id, spec.modseq, mbox.actor)
            # Changed messages found in SQL (RFC 7162 MODSEQ search), then read: costs what changed.
            hits = store.search_messages(mbox.id, ModseqAtLeast(spec.modseq + 1), mbox.actor)
            chosen = [(seq, uid) for uid, _ in hits if (seq := mbox.seq_of(uid)) is not None]
            return vanished, mbox.rows(chosen, dates=False)

        def send(found: tuple[list[int], list]) -> None:
            vanished, changed = found
            if spec.known is not None:
                spec.known.last = mbox.uids[-1] if mbox.uids else 1
                vanished = [u for u in vanished if u in spec.known]
            if vanished:
                self.sendUntaggedResponse(b"VANISHED (EARLIER) " + uid_set(vanished))
            for seq, row in changed:
                if spec.known is None or row.uid in spec.known:
                    flags = [*row.flags, "\\Recent"] if row.uid in mbox.recent else row.flags
                    self.sendUntaggedResponse(b"%d FETCH (UID %d FLAGS (%s) MODSEQ (%d))" % (
                        seq, row.uid, " ".join(flags).encode(), row.modseq))

        return in_thread(work).addCallback(send)

    def _fetch_vanished(self, mbox: SelectedMailbox, messages: Any, changed_since: int) -> Deferred:
        """UID FETCH ... (CHANGEDSINCE m VANISHED): the UIDs of ``messages`` expunged since ``m`` (RFC 7162 3.2.6)."""
        highest = mbox.uids[-1] if mbox.uids else 1

        def send(vanished: list[int]) -> None:
            if messages.last is MessageSet._empty:  # noqa: SLF001 - Twisted's marker for "*"
                messages.last = highest
            wanted = [u for u in vanished if u in messages]
            if wanted:
                self.sendUntaggedResponse(b"VANISHED (EARLIER) " + uid_set(wanted))

        return in_thread(self.context.store.vanished_since, mbox.id, changed_since, mbox.actor).addCallback(send)
