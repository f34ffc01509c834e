"""FETCH (RFC 3501 6.4.5): one Store query for the rows a FETCH names; message bytes only for sections.

A FETCH of metadata only (FLAGS, UID, ENVELOPE, BODYSTRUCTURE, BODY, RFC822.SIZE,
INTERNALDATE, MODSEQ) is answered from the Store rows in a worker thread, every
line formatted there and written at once (a large one, FETCH 1:* of a big
mailbox, batch by batch so the client reads while the rest is built): the blob
is never opened (the Store keeps ENVELOPE/BODYSTRUCTURE since delivery), and
only the cached forms the FETCH names are read. A FETCH that needs bytes (BODY[...],
RFC822*) goes through Twisted's per-message writer, each message's bytes read in
a worker thread just before it is sent; sections are cut from the raw bytes so
they are byte-exact, and partial fetches answer ``BODY[...]<origin>``.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import re
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.mail.imap4 import (
    IllegalClientResponse,
    _FetchParser,
    _literal,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from kantoor.imapd.message import HEADER_READ_LIMIT, StoredMessage, filter_header_lines
from kantoor.imapd.sequence_sets import arg_sequence_set
from kantoor.imapd.worker_threads import in_thread
from kantoor.storage.imap_state import FlagUpdate
from kantoor.storage.mail_views import MessageRow
from kantoor.storage.mime import header_complete

log = logging.getLogger(__name__)

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
    """What FETCH items need read from the message bytes: None (the Store row is enough), "headers" or "full".

    ENVELOPE, BODYSTRUCTURE and BODY come from the row: the Store keeps them since delivery.
    """
    need = None
    for part in query:
        if part.type == "rfc822header":
            need = need or "headers"
        elif part.type in ("rfc822", "rfc822text"):
            return "full"
        elif part.type == "body" and (part.header or part.text or part.mime or part.empty):
            if part.header is not None and not part.part:
                need = need or "headers"
            else:
                return "full"
    return need


_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


def internaldate_item(when: dt.datetime) -> bytes:
    """``INTERNALDATE "17-Jul-1996 09:44:25 +0000"`` (RFC 3501 9: date-time), in UTC."""
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return b'INTERNALDATE "%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        when.day, _MONTHS[when.month - 1], when.year, when.hour, when.minute, when.second)


RowItem = Callable[[MessageRow, bool], bytes]


def _flags_item() -> RowItem:
    """FLAGS from the row; encoded once per distinct flag list (the Store shares one list per flag string)."""
    cache: dict[tuple[int, bool], tuple[list[str], bytes]] = {}

    def item(row: MessageRow, recent: bool) -> bytes:
        entry = cache.get((id(row.flags), recent))
        if entry is None or entry[0] is not row.flags:  # the list kept in the entry keeps its id unique
            flags = [*row.flags, "\\Recent"] if recent else row.flags
            entry = cache[(id(row.flags), recent)] = (
                row.flags, b"FLAGS (" + " ".join(flags).encode("utf-8", "replace") + b")")
        return entry[1]

    return item


def _cached_item(name: bytes, attribute: str) -> RowItem:
    """ENVELOPE / BODYSTRUCTURE / BODY: the wire form the Store keeps since delivery."""
    prefix = name + b" "
    value = operator.attrgetter(attribute)

    def item(row: MessageRow, recent: bool) -> bytes:
        return prefix + (value(row) or "NIL").encode("latin-1")

    return item


def _row_item(kind: str) -> RowItem | None:
    """How to write the FETCH item ``kind`` from a Store row alone; None if it needs the message bytes."""
    if kind == "flags":
        return _flags_item()
    if kind == "uid":
        return lambda row, recent: b"UID %d" % row.uid
    if kind == "envelope":
        return _cached_item(b"ENVELOPE", "envelope")
    if kind == "bodystructure":
        return _cached_item(b"BODYSTRUCTURE", "bodystructure")
    if kind == "body":  # BODY without a section: the non-extensible BODYSTRUCTURE
        return _cached_item(b"BODY", "body")
    if kind == "rfc822size":
        return lambda row, recent: b"RFC822.SIZE %d" % row.size
    if kind == "internaldate":
        return lambda row, recent: internaldate_item(row.internaldate)
    if kind == "modseq":
        return lambda row, recent: b"MODSEQ (%d)" % row.modseq
    return None


def _is_row_item(part: Any) -> bool:
    return part.type != "body" or not (part.header or part.text or part.mime or part.empty)


def row_items(query: list[Any], uid: bool) -> list[RowItem]:
    """The writers of a FETCH whose items all come from the Store row (see :func:`bytes_needed`), in order;
    a UID FETCH answers UID even when not asked (RFC 3501 6.4.8)."""
    items: list[RowItem] = []
    for part in query:
        item = _row_item(part.type) if _is_row_item(part) else None
        if item is None:  # pragma: no cover - bytes_needed routes every other item to the body path
            raise ValueError(f"FETCH item {part.type} needs the message bytes")
        items.append(item)
    if uid and not any(part.type == "uid" for part in query):
        items.append(_row_item("uid"))  # type: ignore[arg-type]
    return items


def metadata_line(seq: int, row: MessageRow, query: list[Any], uid: bool, recent: bool) -> bytes:
    """One untagged FETCH response from a Store row alone (no item in ``query`` needs the bytes)."""
    return metadata_lines([(seq, row)], row_items(query, uid), {row.uid} if recent else set())


def metadata_lines(pairs: list[tuple[int, MessageRow]], items: list[RowItem], recent: set[int]) -> bytes:
    """The untagged FETCH responses of ``pairs`` from the rows alone, as one string (one copy)."""
    return b"".join(metadata_pieces(pairs, items, recent))


def metadata_pieces(pairs: list[tuple[int, MessageRow]], items: list[RowItem], recent: set[int]) -> list[bytes]:
    """The untagged FETCH responses of ``pairs`` from the rows alone, one per message."""
    if len(items) == 2:  # e.g. FLAGS ENVELOPE, what clients list a mailbox with: no list and join per message
        first, second = items
        return [b"* %d FETCH (%b %b)\r\n" % (seq, first(row, row.uid in recent), second(row, row.uid in recent))
                for seq, row in pairs]
    return [b"* %d FETCH (%b)\r\n" % (seq, b" ".join([item(row, row.uid in recent) for item in items]))
            for seq, row in pairs]


# A plan step of a FETCH whose only byte-reading items are whole messages (BODY[], BODY.PEEK[], RFC822, with or
# without <partial>, what syncing clients ask): ("raw", label, partial origin, partial length) or ("row", writer).
_Step = tuple[Any, ...]


def whole_message_plan(query: list[Any], uid: bool) -> list[_Step] | None:
    """How to write each message of ``query`` from its row and raw bytes without a MIME tree; None if an item
    needs a section (HEADER, TEXT, MIME, a part number) or another Twisted writer."""
    steps: list[_Step] = []
    for part in query:
        if part.type == "rfc822":
            steps.append(("raw", b"RFC822", None, None))
        elif part.type == "body" and not _is_row_item(part):
            if part.part or part.header or part.text or part.mime:
                return None
            label = _section_label(part)
            if part.partialBegin is not None:
                label += b"<%d>" % part.partialBegin
            steps.append(("raw", label, part.partialBegin, part.partialLength))
        else:
            item = _row_item(part.type)
            if item is None:
                return None
            steps.append(("row", item))
    if uid and not any(part.type == "uid" for part in query):
        steps.append(("row", _row_item("uid")))
    return steps


def render_whole_messages(batch: list[tuple[int, MessageRow]], bodies: dict[int, bytes], steps: list[_Step],
                          recent: set[int]) -> list[bytes]:
    """The FETCH responses of ``batch`` by a :func:`whole_message_plan`, as pieces: the caller joins them once
    (each body copied once)."""
    out: list[bytes] = []
    append = out.append
    for seq, row in batch:
        data = bodies.get(row.id)
        if data is None:
            continue  # expunged by another session meanwhile: nothing to send (RFC 3501 7.4.1 comes later)
        is_recent = row.uid in recent
        append(b"* %d FETCH (" % seq)
        for n, step in enumerate(steps):
            if n:
                append(b" ")
            if step[0] == "row":
                append(step[1](row, is_recent))
                continue
            _, label, begin, length = step
            piece = data if begin is None else data[begin:begin + length]
            append(b"%b {%d}\r\n" % (label, len(piece)))  # the literal (RFC 3501 4.3)
            append(piece)
        append(b")\r\n")
    return out


def cache_needed(query: list[Any]) -> frozenset[str]:
    """Which of the Store's ENVELOPE / BODYSTRUCTURE / BODY wire forms (MessageRow attributes) ``query`` writes:
    only those are read (a BODYSTRUCTURE can be longer than the rest of the row)."""
    names = set()
    for part in query:
        if part.type in ("envelope", "bodystructure"):
            names.add(part.type)
        elif part.type == "body" and _is_row_item(part):
            names.add("body")
    return frozenset(names)


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
        _w(b"MODSEQ (%d)" % msg.row.modseq)

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
        if not query:
            self.sendPositiveResponse(tag, b"FETCH completed")
            return
        chosen = mbox.select(messages, bool(uid))
        need = bytes_needed(query)
        cached = cache_needed(query)
        seen = mbox.isWriteable() and marks_seen(query)
        dates = any(p.type == "internaldate" for p in query)  # parsing timestamps costs on SQLite: only if asked
        # Read, not copied (a copy cost the whole mailbox after a first SELECT): the set changes only on the
        # reactor, by refreshes, and no refresh runs while this command holds the session.
        recent = mbox.recent

        marked: list[FlagUpdate] = []  # set in the worker thread, read on the reactor after it finished

        def rows(bodies: bool = False) -> list[tuple[int, MessageRow]]:
            if seen:
                # RFC 3501 6.4.5: reading the body sets \Seen; the rows read below already show it.
                unseen = [row.uid for _, row in mbox.rows(chosen, dates=False) if "\\Seen" not in row.flags]
                if unseen:
                    marked.append(mbox.storage.store_flags(mbox.id, unseen, ["\\Seen"], "add", mbox.actor))
            pairs = mbox.rows(chosen, cached=cached, dates=dates, bodies=bodies)
            if changed_since is not None:
                pairs = [(seq, row) for seq, row in pairs if row.modseq > changed_since]
            return pairs

        if need is None:
            items = row_items(query, bool(uid))
            if len(chosen) > METADATA_BATCH:
                # A FETCH 1:* of a large mailbox: written batch by batch, so the client reads the first
                # responses while the next are read and formatted (as Dovecot streams them), instead of
                # waiting for the whole answer to be built.
                self._hold()
                _MetadataWriter(self, tag, chosen, items, cached, dates, changed_since, recent).start()
                return

            def lines() -> bytes:
                with mbox.storage.request_scope():  # the command's reads share one session
                    pairs = rows()
                return metadata_lines(pairs, items, recent)

            def written(data: bytes) -> None:
                self.transport.write(data)
                self.sendPositiveResponse(tag, b"FETCH completed")

            self._run(tag, lambda: in_thread(lines), written)
            return
        if seen and not any(p.type == "flags" for p in query):
            query = [*query, _FetchParser.Flags()]  # tell the client about the new \Seen
        self._hold()
        writer = _BodyWriter(self, tag, mbox, [], query, bool(uid), need == "headers")
        # A FETCH of whole messages small enough for one batch (a client's usual body FETCH) reads the inline
        # bodies with the rows: one query for the whole answer. A larger one reads them batch by batch.
        writer.with_bodies = need == "full" and len(chosen) <= BATCH_MESSAGES

        def rows_and_first_batch() -> tuple[_Rendered, int]:
            # One worker round trip, and one read session, for the rows and the first batch of bodies
            # (often the whole answer, its tagged OK included).
            with mbox.storage.request_scope():
                writer.pairs = rows(writer.with_bodies)
                end = writer.batch_end(0)
                return writer.produce(writer.pairs[:end], end >= len(writer.pairs)), end

        def spew(first: tuple[_Rendered, int]) -> None:
            for update in marked:
                mbox.note_own_changes(update)  # this session told the client: a refresh does not repeat it
            writer.start(*first)

        def failed(failure: Failure) -> None:
            self._refuse(failure, tag)
            self._release()

        in_thread(rows_and_first_batch).addCallbacks(spew, failed)

    select_FETCH = (do_FETCH, arg_sequence_set, arg_fetch_items)

    def render_message(self, seq: int, msg: StoredMessage, query: list[Any], uid: bool, out: list[bytes]) -> None:
        """One untagged FETCH response for a message whose bytes are loaded, appended to ``out`` in pieces
        (pure: runs in a worker thread). The caller joins a whole batch once: a body is copied once."""
        out.append(b"* %d FETCH (" % seq)
        for n, part in enumerate(query):
            if n:
                out.append(b" ")
            if part.type == "body":
                self.spew_body(part, seq, msg, out.append, None)
            else:
                getattr(self, "spew_" + part.type)(seq, msg, out.append, None)
        if uid and not any(part.type == "uid" for part in query):
            out.append(b" UID %d" % msg.uid)
        out.append(b")\r\n")

    def spew_envelope(self, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        _w(b"ENVELOPE " + (msg.row.envelope or "NIL").encode("latin-1"))

    def spew_body(self, part: Any, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        if _w is None:
            _w = self.transport.write
        if not (part.header or part.text or part.mime or part.empty):
            _w(b"BODY " + (msg.row.body or "NIL").encode("latin-1"))
            return
        if not part.part and not (part.header or part.text or part.mime) and msg.full:
            # BODY[] / BODY[]<partial>: the message as stored, without building its MIME tree.
            data = msg.raw or b""
            label = _section_label(part)
            if part.partialBegin is not None:
                data = data[part.partialBegin:part.partialBegin + part.partialLength]
                label += b"<%d>" % part.partialBegin
            _w(label + b" {%d}\r\n" % len(data))  # the literal (RFC 3501 4.3), its bytes not copied here
            _w(data)
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
        _w(b"BODYSTRUCTURE " + (msg.row.bodystructure or "NIL").encode("latin-1"))

    def spew_rfc822(self, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        _w(b"RFC822 " + _literal(msg._loaded().raw))

    def spew_rfc822text(self, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        _w(b"RFC822.TEXT " + _literal(msg._loaded().body))

    def spew_rfc822header(self, id: int, msg: StoredMessage, _w: Any = None, _f: Any = None) -> None:  # noqa: A002
        _w(b"RFC822.HEADER " + _literal(msg._loaded().header_block))


# Messages read and rendered per worker-thread round trip: a batch ends after this many bytes of bodies.
# A client's usual body FETCH (a hundred messages of a few dozen KiB) fits in one: one round trip.
BATCH_BYTES = 4 * 1024 * 1024
BATCH_MESSAGES = 256


# What a batch renders to: its bytes, and where the tagged OK starts in them (the last batch) or None.
_Rendered = tuple[bytes, int | None]

# A FETCH of metadata only for more messages than this is written batch by batch (:class:`_MetadataWriter`);
# the first batch is smaller, so the first responses leave soon.
METADATA_BATCH = 2048
METADATA_FIRST_BATCH = 512


@implementer(IPushProducer)
class _BatchWriter:
    """Writes a long FETCH answer batch by batch, each read and rendered in a worker thread (:meth:`render`).

    Registered as the transport's streaming producer, so a slow reader pauses it
    (no more than one batch is buffered beyond what the socket takes), and the
    reactor never reads or formats the messages.
    """

    def __init__(self, server: Any, tag: bytes, pairs: list[Any]) -> None:
        self.server, self.tag, self.pairs = server, tag, pairs
        self.position = 0
        self.paused = False
        self.waiting = False  # a batch is done and the next waits for resumeProducing
        self.stopped = False
        self.timeout = None

    def start(self, first: _Rendered = (b"", None), position: int = 0) -> None:
        """Send ``first`` (``produce(pairs[:position])``), then the rest batch by batch."""
        self.timeout = self.server.setTimeout(None)  # a long FETCH is not an idle client
        self.server.transport.registerProducer(self, True)
        self.position = position
        self._written(first)

    def batch_end(self, start: int) -> int:
        raise NotImplementedError

    def render(self, batch: list[Any]) -> list[bytes]:
        """The responses of ``batch`` (worker thread), as pieces to join."""
        raise NotImplementedError

    def produce(self, batch: list[Any], last: bool) -> _Rendered:
        """The bytes of ``batch`` (worker thread), joined once. The last batch ends with the tagged OK, and its
        offset is returned: written after the bodies, the OK made the transport copy the whole answer again
        (Twisted joins what was written in one reactor turn) just to append one line."""
        pieces = self.render(batch)
        if not last:
            return b"".join(pieces), None
        ok_at = sum(map(len, pieces))
        pieces.append(self.tag + b" OK FETCH completed\r\n")
        return b"".join(pieces), ok_at

    def _next(self) -> None:
        if self.stopped:
            return
        if self.position >= len(self.pairs):
            self._finish(None)
            return
        end = self.batch_end(self.position)
        batch, self.position = self.pairs[self.position:end], end
        in_thread(self.produce, batch, end >= len(self.pairs)).addCallbacks(self._written, self._finish)

    def _written(self, rendered: _Rendered) -> None:
        if self.stopped:
            return
        data, ok_at = rendered
        if ok_at is not None:
            # Untagged responses queued meanwhile (Twisted's ``_queuedAsync``) must precede the tagged OK:
            # then the OK is cut off and sent after them, as sendPositiveResponse does.
            told = not self.server._queuedAsync
            self.server.transport.write(data if told else data[:ok_at])
            self._finish(None, told)
            return
        if data:
            self.server.transport.write(data)
        if self.paused:
            self.waiting = True
        else:
            self._next()

    def _finish(self, failure: Failure | None, answered: bool = False) -> None:
        self.server.transport.unregisterProducer()
        self.server.setTimeout(self.timeout)
        if failure is not None:
            self._failed(failure)
        elif not answered:
            self.server.sendPositiveResponse(self.tag, b"FETCH completed")
        self.server._release()

    def _failed(self, failure: Failure) -> None:
        # Part of the answer may be on the wire already: log it and answer NO rather than hang.
        log.error("FETCH failed: %s", failure.getTraceback())
        self.server.sendNegativeResponse(self.tag, b"[SERVERBUG] FETCH failed")

    # -- IPushProducer
    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        if self.waiting:
            self.waiting = False
            self._next()

    def stopProducing(self) -> None:  # noqa: N802
        self.stopped = True


class _MetadataWriter(_BatchWriter):
    """A FETCH of metadata only (FLAGS, ENVELOPE, …) of many messages: each batch's rows read in one query and
    formatted in a worker thread. Each batch is its own read (a message expunged meanwhile is left out, as
    in the body path; flags are as they are when the batch is read, RFC 3501 7.4.2 allows no less)."""

    def __init__(self, server: Any, tag: bytes, chosen: list[tuple[int, int]], items: list[RowItem],
                 cached: frozenset[str], dates: bool, changed_since: int | None, recent: set[int]) -> None:
        super().__init__(server, tag, chosen)
        self.mbox = server.mbox
        self.items, self.cached, self.dates = items, cached, dates
        self.changed_since, self.recent = changed_since, recent

    def batch_end(self, start: int) -> int:
        return min(len(self.pairs), start + (METADATA_FIRST_BATCH if start == 0 else METADATA_BATCH))

    def render(self, batch: list[tuple[int, int]]) -> list[bytes]:
        with self.mbox.storage.request_scope():
            pairs = self.mbox.rows(batch, cached=self.cached, dates=self.dates)
        if self.changed_since is not None:
            pairs = [(seq, row) for seq, row in pairs if row.modseq > self.changed_since]
        return metadata_pieces(pairs, self.items, self.recent)

    def _failed(self, failure: Failure) -> None:
        self.server._refuse(failure, self.tag)  # e.g. the read right taken away meanwhile: NO [NOPERM]


class _BodyWriter(_BatchWriter):
    """Writes a FETCH that needs message bytes: batches of messages read and rendered in a worker thread."""

    def __init__(self, server: Any, tag: bytes, mbox: Any, pairs: list[tuple[int, MessageRow]], query: list[Any],
                 uid: bool, headers_only: bool) -> None:
        super().__init__(server, tag, pairs)
        self.mbox = mbox
        self.query, self.uid, self.headers_only = query, uid, headers_only
        # BODY[] / BODY.PEEK[] / RFC822 alone (what syncing clients fetch) are written from the raw bytes
        # without a StoredMessage or MIME tree per message; None: every message goes through render_message.
        self.plan = None if headers_only else whole_message_plan(query, uid)
        self.with_bodies = False  # the rows carry their inline bodies (MessageRow.inline_body)

    def batch_end(self, start: int) -> int:
        """Where the batch starting at ``start`` ends: at most BATCH_MESSAGES messages and BATCH_BYTES (but one)."""
        end, size = start, 0
        while end < len(self.pairs) and end - start < BATCH_MESSAGES and (
                end == start or size + self.pairs[end][1].size <= BATCH_BYTES):
            size += self.pairs[end][1].size
            end += 1
        return end

    def render(self, batch: list[tuple[int, MessageRow]]) -> list[bytes]:
        """The FETCH responses of ``batch`` (worker thread), as pieces: bodies read in one Store call."""
        if not batch:
            return []
        store = self.server.context.store
        limit = HEADER_READ_LIMIT if self.headers_only else None
        if self.with_bodies:  # the rows were read with their inline bodies, under the command's read check
            bodies = store.row_bodies([row for _, row in batch])
        else:
            bodies = store.message_bodies(self.mbox.id, [row.id for _, row in batch], self.mbox.actor, limit)
        if self.plan is not None:
            return render_whole_messages(batch, bodies, self.plan, self.mbox.recent)
        out: list[bytes] = []
        for seq, row in batch:
            msg = self.mbox.message(row)
            data = bodies.get(row.id)
            if data is None:
                continue  # expunged by another session meanwhile: nothing to send (RFC 3501 7.4.1 comes later)
            if self.headers_only and not header_complete(data):
                msg.load(store, headers_only=True)  # a header block larger than the usual read
            else:
                msg.load_bytes(data, self.headers_only)
            try:
                self.server.render_message(seq, msg, self.query, self.uid, out)
            finally:
                msg.unload()
        return out
