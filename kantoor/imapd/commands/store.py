"""STORE and UID STORE (RFC 3501 6.4.6), with CONDSTORE's UNCHANGEDSINCE modifier (RFC 7162 3.1.3)."""

from __future__ import annotations

import re
from typing import Any

from twisted.mail.imap4 import IllegalClientResponse, IMAP4Server

from kantoor.imapd.mailbox import StoreResult
from kantoor.imapd.sequence_sets import arg_sequence_set

_MODIFIER = re.compile(rb"\(\s*UNCHANGEDSINCE\s+(\d{1,19})\s*\)\s*", re.IGNORECASE)
_MODES = (b"FLAGS", b"+FLAGS", b"-FLAGS", b"FLAGS.SILENT", b"+FLAGS.SILENT", b"-FLAGS.SILENT")


class StoreCommand:
    def opt_store_modifiers(self, line: bytes) -> tuple[int | None, bytes]:
        """``(UNCHANGEDSINCE n)`` before the data item, if present."""
        if not line.startswith(b"("):
            return None, line
        match = _MODIFIER.match(line)
        if match is None:
            raise IllegalClientResponse("unknown STORE modifier")
        return int(match.group(1)), line[match.end():]

    def do_STORE(self, tag: bytes, messages: Any, unchanged_since: int | None, mode: bytes,  # noqa: N802
                 flags: list[bytes], uid: int = 0) -> None:
        mode = mode.upper()
        if mode not in _MODES:
            self.sendBadResponse(tag, b"unknown STORE data item")
            return
        if unchanged_since is not None:
            self.condstore = True  # RFC 7162 3.1: a CONDSTORE-enabling command
        silent = mode.endswith(b".SILENT")
        how = 1 if mode.startswith(b"+") else -1 if mode.startswith(b"-") else 0
        names = [f.decode("ascii", "replace") for f in flags]
        mbox = self.mbox

        def done(result: StoreResult) -> None:
            # RFC 7162 3.1.3: with CONDSTORE, .SILENT still reports the new MODSEQ (without FLAGS).
            if not silent or self.condstore:
                lines: list[bytes] = []
                flag_text: dict[int, bytes] = {}  # id(flag list) -> its text: few distinct lists per command
                for seq, new in sorted(result.flags.items()):
                    items = []
                    if not silent:
                        text = flag_text.get(id(new))
                        if text is None:
                            text = flag_text[id(new)] = b"FLAGS (%s)" % " ".join(new).encode()
                        items.append(text)
                    if uid:
                        items.append(b"UID %d" % mbox.getUID(seq))
                    if self.condstore:
                        items.append(b"MODSEQ (%d)" % result.modseqs[seq])
                    lines.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items)))
                self.transport.write(b"".join(lines))  # one write for all: a STORE 1:* answers 10,000 lines
            if result.modified:
                numbers = ",".join(str(n) for n in sorted(result.modified)).encode()
                self.sendPositiveResponse(tag, b"[MODIFIED " + numbers + b"] conditional STORE failed")
            else:
                self.sendPositiveResponse(tag, b"STORE completed")

        self._run(tag, lambda: mbox.store(messages, names, how, uid=bool(uid), unchanged_since=unchanged_since),
                  done)

    select_STORE = (do_STORE, arg_sequence_set, opt_store_modifiers, IMAP4Server.arg_atom,
                    IMAP4Server.arg_flaglist)
