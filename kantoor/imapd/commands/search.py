"""SEARCH and UID SEARCH (RFC 3501 6.4.4): keys parsed by :mod:`kantoor.imapd.search_keys`, answered by the
Store in one SQL query (:meth:`Store.search_messages`)."""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import Deferred
from twisted.mail.imap4 import IMAP4Server, LiteralString

from kantoor.imapd import search_keys
from kantoor.imapd.worker_threads import in_thread

_TRAILING_LITERAL = re.compile(rb"\{(\d{1,9})\}\Z")


def _is_search(line: bytes) -> bool:
    words = line.split(None, 3)[1:3]
    if not words:
        return False
    command = words[0].upper()
    return command == b"SEARCH" or (command == b"UID" and len(words) > 1 and words[1].upper() == b"SEARCH")


class SearchCommand:
    def parse_command(self, line: bytes) -> None:
        literal = _TRAILING_LITERAL.search(line)
        if literal is not None and self.state == "select" and _is_search(line):
            self._read_search_literal(line[:literal.start()], int(literal.group(1)))
            return
        super().parse_command(line)  # type: ignore[misc]

    def _read_search_literal(self, head: bytes, size: int) -> None:
        """SEARCH strings may be literals (RFC 3501 6.4.4); Twisted's SEARCH parser expects them inline."""
        if size > self._literalStringLimit:
            self.sendBadResponse(head.split(None, 1)[0], b"search literal too long")
            return
        d: Deferred = Deferred()
        self.parseState = "pending"
        self._pendingLiteral = LiteralString(size, d)
        self.sendContinuationRequest(b"Ready for literal")
        self.setRawMode()

        def received(result: tuple[bytes, bytes]) -> None:
            data, rest = result
            # parseNestedParens understands an inline "{n}\r\n<data>" literal.
            self.parse_command(head + b"{%d}\r\n" % len(data) + data + rest)

        d.addCallback(received)

    def do_SEARCH(self, tag: bytes, charset: bytes | None, query: list[Any], uid: int = 0) -> None:  # noqa: N802
        if charset is not None and charset.upper() not in (b"US-ASCII", b"UTF-8"):
            self.sendNegativeResponse(tag, b"[BADCHARSET (US-ASCII UTF-8)] unsupported charset")
            return
        mbox = self.mbox
        parser = search_keys.SearchParser(mbox.uids, mbox.recent)
        try:
            criterion = parser.parse(query)
        except search_keys.SearchSyntaxError as error:
            self.sendBadResponse(tag, str(error).encode("ascii", "replace"))
            return

        def done(hits: list[tuple[int, int]]) -> None:
            # Only messages this session knows of: one that arrived or went meanwhile is told by the next refresh.
            known = [(found, seq) for found, _ in hits if (seq := mbox.seq_of(found)) is not None]
            numbers = [found if uid else seq for found, seq in known]
            words = [b"SEARCH", *(b"%d" % number for number in numbers)]
            if parser.used_modseq:
                self.condstore = True  # RFC 7162 3.1: SEARCH MODSEQ enables CONDSTORE
                if hits:
                    words.append(b"(MODSEQ %d)" % max(modseq for _, modseq in hits))
            self.sendUntaggedResponse(b" ".join(words))
            self.sendPositiveResponse(tag, b"SEARCH completed")

        store = self.context.store
        self._run(tag, lambda: in_thread(store.search_messages, mbox.id, criterion, mbox.actor), done)

    select_SEARCH = (do_SEARCH, IMAP4Server.opt_charset, IMAP4Server.arg_searchkeys)
