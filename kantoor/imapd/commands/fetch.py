"""FETCH (RFC 3501 6.4.5): message bytes are read in a worker thread just before each message is sent.

Twisted formats most data items; BODY[...] sections, RFC822.* and BODYSTRUCTURE
are written here from the raw bytes, so sections are byte-exact and partial
fetches answer ``BODY[...]<origin>`` as the RFC says.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.mail.imap4 import IMAP4Server, _FetchParser, _literal, collapseNestedLists
from twisted.python.failure import Failure

from kantoor.imapd.bodystructure import body_structure
from kantoor.imapd.message import StoredMessage, filter_header_lines


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
    def do_FETCH(self, tag: bytes, messages: Any, query: list[Any], uid: int = 0) -> None:  # noqa: N802
        mbox = self.mbox
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
        d = deferToThread(self.context.store.set_flags, mbox.id, unseen, ["\\Seen"], "add", mbox.actor)

        def marked(new_flags: dict[int, list[str]]) -> None:
            for message in mbox.messages:
                if message.uid in new_flags:
                    message.item.flags = " ".join(new_flags[message.uid])
            # Twisted's FETCH keeps holding later commands and releases them when it is done.
            super(FetchCommand, self).do_FETCH(tag, messages, query, uid)

        def failed(failure: Failure) -> None:
            self._refuse(failure, tag)
            self._release()

        d.addCallbacks(marked, failed)

    select_FETCH = (do_FETCH, IMAP4Server.arg_seqset, IMAP4Server.arg_fetchatt)

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
