"""EXPUNGE (RFC 3501 6.4.3) and UID EXPUNGE (RFC 4315 2.1), each one Store transaction."""

from __future__ import annotations

from typing import Any


class ExpungeCommand:
    def do_EXPUNGE(self, tag: bytes, messages: Any = None, uid: int = 0) -> None:  # noqa: N802
        mbox = self.mbox
        uids = [u for _, u in mbox.select(messages, True)] if uid else None

        def done(expunged: list[tuple[int, int]]) -> None:
            self._report_expunged(expunged)
            self.sendPositiveResponse(tag, b"EXPUNGE completed")

        if uid and not uids:
            self.sendPositiveResponse(tag, b"EXPUNGE completed")
            return
        self._run(tag, lambda: mbox.expunge(uids), done)

    select_EXPUNGE = (do_EXPUNGE,)
