"""RENAME (RFC 3501 6.3.5): one Store transaction renames the mailbox and everything below it.

Renaming INBOX moves its messages into the new mailbox and leaves INBOX empty.
"""

from __future__ import annotations

from twisted.mail.imap4 import IMAP4Server, _parseMbox

from kantoor.imapd.account import canonical_name, strict_name, validate_name
from kantoor.imapd.worker_threads import in_thread


class RenameCommand:
    def do_RENAME(self, tag: bytes, old: bytes, new: bytes) -> None:  # noqa: N802
        old_name = canonical_name(_parseMbox(old))
        try:
            new_name = canonical_name(strict_name(new))
            validate_name(new_name)
        except ValueError as error:
            self.sendNegativeResponse(tag, b"[CANNOT] " + str(error).encode("ascii", "replace"))
            return
        if new_name == "INBOX":
            self.sendNegativeResponse(tag, b"[CANNOT] nothing can be renamed to INBOX")
            return
        store, principal = self.context.store, self.account.principal_id
        self._run(tag, lambda: in_thread(store.rename_mailbox, principal, old_name, new_name, principal),
                  lambda _: self.sendPositiveResponse(tag, b"RENAME completed"))

    auth_RENAME = (do_RENAME, IMAP4Server.arg_astring, IMAP4Server.arg_finalastring)
    select_RENAME = auth_RENAME
