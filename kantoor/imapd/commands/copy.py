"""COPY and UID COPY (RFC 3501 6.4.7) in one Store transaction, with COPYUID (RFC 4315 3)."""

from __future__ import annotations

from typing import Any

from twisted.mail.imap4 import IMAP4Server, _parseMbox

from kantoor.imapd.replies import Refused
from kantoor.imapd.sequence_sets import arg_sequence_set
from kantoor.imapd.worker_threads import in_thread
from kantoor.storage import NotFound


def copyuid(uidvalidity: int, pairs: list[tuple[int, int]]) -> bytes:
    """``COPYUID <uidvalidity> <source uids> <new uids>``, UIDs in matching order."""
    sources = ",".join(str(a) for a, _ in pairs).encode()
    targets = ",".join(str(b) for _, b in pairs).encode()
    return b"COPYUID %d %s %s" % (uidvalidity, sources, targets)


class CopyCommand:
    def _transfer(self, messages: Any, name: bytes, uid: int, move: bool) -> Any:
        """Start the Store copy/move in a thread; fires with (target uidvalidity, (source, new) UID pairs)."""
        mailbox = _parseMbox(name)
        chosen = self.mbox.select(messages, bool(uid))
        uids = [u for _, u in chosen]
        store, account, source = self.context.store, self.account, self.mbox

        def work() -> tuple[int, list[tuple[int, int]]]:
            try:
                target = account.find(mailbox)
            except NotFound:
                raise Refused("TRYCREATE", "no such mailbox") from None
            if move and target.id == source.id:
                raise Refused("CANNOT", "messages are already in that mailbox")
            pairs = store.copy_messages(source.id, uids, target.id, actor=account.principal_id, move=move)
            return int(target.uidvalidity), pairs

        return in_thread(work)

    def do_COPY(self, tag: bytes, messages: Any, name: bytes, uid: int = 0) -> None:  # noqa: N802
        def done(result: tuple[int, list[tuple[int, int]]]) -> None:
            validity, pairs = result
            if not pairs:
                self.sendPositiveResponse(tag, b"COPY completed")
                return
            self.sendPositiveResponse(tag, b"[" + copyuid(validity, pairs) + b"] COPY completed")

        self._run(tag, lambda: self._transfer(messages, name, uid, move=False), done)

    select_COPY = (do_COPY, arg_sequence_set, IMAP4Server.arg_finalastring)
