"""FETCH (RFC 3501 6.4.5): message bytes are read in a worker thread just before each message is sent.

Twisted formats most data items; BODY[...] sections, RFC822.* and BODYSTRUCTURE
are written here from the raw bytes, so sections are byte-exact and partial
fetches answer ``BODY[...]<origin>`` as the RFC says.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.mail.imap4 import (
    IllegalClientResponse,
    IMAP4Server,
    MessageSet,
    _FetchParser,
    _literal,
    collapseNestedLists,
)
from twisted.python.failure import Failure

from kantoor.imapd.bodystructure import body_structure
from kantoor.imapd.message import StoredMessage, filter_header_lines

_CHANGEDSINCE = re.compile(rb"\s*\(\s*CHANGEDSINCE\s+(\d{1,19})(\s+VANISHED)?\s*\)\s*\Z", re.IGNORECASE)
_MODSEQ_ITEM = re.compile(rb"(?<![^\s(])MODSEQ(?![^\s)])", re.IGNORECASE)


class FetchQuery(list):  # type: ignore[type-arg]
    """Twisted's parsed fetch items plus RFC 7162's MODSEQ item and CHANGEDSINCE modifier."""

    changed_since: int | None = None
    vanished = False  # QRESYNC's VANISHED modifier (RFC 7162 3.2.6)
    wants_modseq = False


class ModseqItem:
    """The MODSEQ fetch item (RFC 7162 3.1.4): ``spewMessage`` calls ``spew_modseq`` for it."""

    type = "modseq"


def parse_fetch_items(line: bytes) -> FetchQuery:
    """FETCH's items and modifiers; MODSEQ and CHANGEDSINCE are taken out before Twisted parses the rest."""
    changed_since = None
    match = _CHANGEDSINCE.search(line)
    vanished = False
    if match is not None:
        changed_since = int(match.group(1))
        vanished = match.group(2) is not None
        line = line[:match.start()]
    line, count = _MODSEQ_ITEM.subn(b"", line)
    line = re.sub(rb"\(\s+", b"(", re.sub(rb"\s+\)", b")", re.sub(rb"  +", b" ", line))).strip()
    query = FetchQuery()
    if line not in (b"", b"()"):
        parser = _FetchParser()
        parser.parseString(line)
        query.extend(parser.result)
    elif not count:
        raise IllegalClientResponse("missing FETCH items")
    query.changed_since = changed_since
    query.vanished = vanished
    query.wants_modseq = bool(count) or changed_since is not None
    if query.wants_modseq:
        query.append(ModseqItem())
    return query


def bytes_needed(query: list[Any]) -> str | None:
    """What FETCH items need read from the Store: None, "headers" or "full"."""
    need = None
    for part in query:
        if part.type in ("envelope", "rfc822header"):
            need = need or "headers"
        elif part.type in ("rfc822", "rfc822text", "bodystructure"):
            return "full"
        elif part.type == "body":
            if part.header is not None and not part.part:
                need = need or "headers"
            else:
                return "full"
    return need


def marks_seen(query: list[Any]) -> bool:
    """RFC 3501 6.4.5: BODY[...] (not PEEK), RFC822 and RFC822.TEXT set \\Seen."""
    for part in query:
        if part.type in ("rfc822", "rfc822text"):
            return True
        if part.type == "body" and not part.peek and (part.header or part.text or part.mime or part.empty):
            return True
    return False


def _section_label(part: Any) -> bytes:
    begin = part.partialBegin
    part.partialBegin = None
    try:
        label = part.getBytes()
    finally:
        part.partialBegin = begin
    return label


class FetchCommand:
    def arg_fetch_items(self, line: bytes) -> tuple[FetchQuery, bytes]:
        return parse_fetch_items(line), b""

    def spew_modseq(self, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        _w(b"MODSEQ (%d)" % msg.item.modseq)

    def do_FETCH(self, tag: bytes, messages: Any, query: list[Any], uid: int = 0) -> None:  # noqa: N802
        mbox = self.mbox
        if getattr(query, "wants_modseq", False):
            self.condstore = True  # RFC 7162 3.1: MODSEQ and CHANGEDSINCE enable CONDSTORE
        changed_since = getattr(query, "changed_since", None)
        if getattr(query, "vanished", False):
            if not (uid and self.qresync):
                self.sendBadResponse(tag, b"VANISHED needs UID FETCH and ENABLE QRESYNC")
                return
            query.vanished = False
            self._hold()  # the FETCH below releases the commands held behind it
            d = self._fetch_vanished(mbox, messages, changed_since)
            d.addCallback(lambda _: self.do_FETCH(tag, messages, query, uid))
            d.addErrback(lambda failure: (self._refuse(failure, tag), self._release()))
            return
        if changed_since is not None:
            numbers = [m.uid if uid else seq for seq, m in mbox.select(messages, bool(uid))
                       if m.item.modseq > changed_since]
            if not numbers:
                self.sendPositiveResponse(tag, b"FETCH completed")
                self._release()  # in case a VANISHED look-up held later commands
                return
            messages = MessageSet()
            for number in numbers:
                messages.add(number)
        if not (query and mbox.isWriteable() and marks_seen(query)):
            super().do_FETCH(tag, messages, query, uid)
            return
        unseen = [m.uid for _, m in mbox.select(messages, bool(uid)) if "\\Seen" not in m.flags]
        if not unseen:
            super().do_FETCH(tag, messages, query, uid)
            return
        if not any(p.type == "flags" for p in query):
            query = [*query, _FetchParser.Flags()]  # tell the client about the new \Seen
        self._hold()
        d = mbox.mark_seen(unseen)

        def marked(_: object) -> None:
            # Twisted's FETCH keeps holding later commands and releases them when it is done.
            super(FetchCommand, self).do_FETCH(tag, messages, query, uid)

        def failed(failure: Failure) -> None:
            self._refuse(failure, tag)
            self._release()

        d.addCallbacks(marked, failed)

    select_FETCH = (do_FETCH, IMAP4Server.arg_seqset, arg_fetch_items)

    def spewMessage(self, id: int, msg: StoredMessage, query: list[Any], uid: int) -> Deferred:  # noqa: N802, A002
        need = bytes_needed(query)
        if need is None:
            return super().spewMessage(id, msg, query, uid)
        d = deferToThread(msg.load, self.context.store, need == "headers")
        d.addCallback(lambda _: super(FetchCommand, self).spewMessage(id, msg, query, uid))

        def unload(result: object) -> object:
            msg.unload()
            return result

        return d.addBoth(unload)

    def spew_body(self, part: Any, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        if _w is None:
            _w = self.transport.write
        if not (part.header or part.text or part.mime or part.empty):
            _w(b"BODY " + collapseNestedLists([body_structure(msg._loaded(), extended=False)]))
            return
        entity: Any = msg.part
        data: bytes | None = None
        try:
            for number in part.part:
                if entity.isMultipart():
                    entity = entity.getSubPart(number)
                elif number > 0:
                    raise IndexError(number)
        except IndexError:
            data = b""  # a part that does not exist is empty (RFC 3501 6.4.5)
        if data is None:
            if part.header:
                data = entity.header_block
                if part.header.fields:
                    data = filter_header_lines(data, list(part.header.fields), bool(part.header.negate))
            elif part.text or (part.empty and part.part):
                data = entity.body
            elif part.mime:
                data = entity.header_block
            else:
                data = entity.raw
        label = _section_label(part)
        if part.partialBegin is not None:
            data = data[part.partialBegin:part.partialBegin + part.partialLength]
            label += b"<%d>" % part.partialBegin
        _w(label + b" " + _literal(data))

    def spew_bodystructure(self, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        _w(b"BODYSTRUCTURE " + collapseNestedLists([body_structure(msg._loaded(), extended=True)]))

    def spew_rfc822(self, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        _w(b"RFC822 " + _literal(msg._loaded().raw))

    def spew_rfc822text(self, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        _w(b"RFC822.TEXT " + _literal(msg._loaded().body))

    def spew_rfc822header(self, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        _w(b"RFC822.HEADER " + _literal(msg._loaded().header_block))
