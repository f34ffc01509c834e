"""MOVE and UID MOVE (RFC 6851): one Store transaction moves the rows; COPYUID then EXPUNGEs."""

from __future__ import annotations

from typing import Any

from twisted.mail.imap4 import IMAP4Server

from kantoor.imapd.commands.copy import copyuid
from kantoor.imapd.sequence_sets import arg_sequence_set


class MoveCommand:
    def do_MOVE(self, tag: bytes, messages: Any, name: bytes, uid: int = 0) -> None:  # noqa: N802
        mbox = self.mbox
        if not mbox.isWriteable():
            self.sendNegativeResponse(tag, b"[CANNOT] mailbox is selected read-only")
            return

        def done(result: tuple[int, list[tuple[int, int]]]) -> None:
            validity, pairs = result
            if pairs:
                # RFC 6851 4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
                self.sendPositiveResponse(None, b"[" + copyuid(validity, pairs) + b"] moved")
            self._report_expunged(mbox.forget([source for source, _ in pairs]))
            self.sendPositiveResponse(tag, b"MOVE completed")

        self._run(tag, lambda: self._transfer(messages, name, uid, move=True), done)

    select_MOVE = (do_MOVE, arg_sequence_set, IMAP4Server.arg_finalastring)

