"""What the Store keeps about a message besides its bytes, computed once when it is delivered.

* ENVELOPE, BODYSTRUCTURE and BODY (RFC 3501 7.4.2) in their wire form, like
  Dovecot's index cache: FETCH writes them out without opening the body.
* Every header field decoded (RFC 2047) and lower-cased, and the decoded text of
  the text parts (transfer encoding and charset undone, HTML tags dropped),
  capped: SEARCH's string keys run as SQL ``LIKE`` over them. A delivery leaves
  these to the search backlog (``search=False``; :mod:`kantoor.storage.search_backlog`).
* The Date header's calendar day for SENTBEFORE/SENTON/SENTSINCE.

Twisted's BODYSTRUCTURE reports part sizes including the part's headers,
lower-cases parameter values (boundaries are case-sensitive) and sends NIL where
the RFC wants a string (encoding), which strict clients reject; this one follows
the RFC. The wire form uses Twisted's quoting (``collapseNestedLists``) so it is
byte-for-byte what the IMAP frontend would have sent.

It is computed for every delivered message, so it reads the raw MIME tree itself
(:func:`kantoor.storage.mime.header_fields`, ``split_multipart``) instead of
building ``email`` Message objects, works out each header block once, writes the
wire text directly, never scans attachments beyond finding their end, and
remembers what recurring header values and part header blocks give. Every field
is what compat32's ``email.message.Message`` API gave the earlier version
(tests/storage/test_message_index*.py hold the stdlib and Twisted to it).
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.errors
import email.header
import email.utils
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.policy import compat32
from typing import Any, NamedTuple, TypeVar

from twisted.mail.imap4 import parseAddr

from kantoor.storage.mime import header_fields, header_text, split_header, split_multipart

# Caps that keep one message's index rows small whatever the message looks like.
MAX_HEADERS = 200
MAX_HEADER_VALUE = 2000
MAX_TEXT = 64 * 1024
# Bodies larger than this are indexed from their first MAX_PARSE bytes (the text parts come first).
MAX_PARSE = 8 * 1024 * 1024

_TAGS = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\n]+")
# Two literal spaces first: the regex engine then skips to each pair in C instead of trying a match at
# every single space between words.
_SPACE_RUNS = re.compile(r"   *")
_SPACE_RUNS_BYTES = re.compile(rb"   *")
# Text parts nested deeper than this are not indexed.
_MAX_DEPTH = 20


@dataclass
class MessageIndex:
    envelope: str
    bodystructure: str
    body: str
    sent_date: dt.date | None
    headers: list[tuple[str, str]] = field(default_factory=list)  # (lower-case name, folded value)
    text: str = ""
    # The item's listing columns (decoded, unfolded, case kept) and the Date header as UTC.
    subject: str = ""
    from_addr: str = ""
    to_addr: str = ""
    message_id: str = ""
    date: dt.datetime | None = None


def wire(value: list[Any]) -> str:
    """A nested list in IMAP's wire syntax (kept as text; it is ASCII, literals included)."""
    return _collapse([value])


def _collapse(items: Any) -> str:
    """Byte for byte what Twisted's ``collapseNestedLists`` gives for these values (None → NIL, numbers
    bare, strings quoted, or sent as literals when they hold CR/LF or pass 1000 bytes), as latin-1 text;
    written out because Twisted's generic version was ~8% of a delivery's CPU
    (``tests/storage/test_message_index.py`` checks the two agree). Built as text, not bytes: an encode
    per string and a decode of the whole were a third of its cost. Text is ASCII, so its length is the
    literal's byte count; bytes items are latin-1, one character per byte."""
    out: list[str] = []
    append = out.append
    for item in items:
        if item is None:
            append("NIL")
            continue
        if isinstance(item, str):
            if not item.isascii():
                item.encode("ascii")  # raises UnicodeEncodeError, as Twisted does (the index passes ASCII only)
        elif isinstance(item, int):
            append(str(item))
            continue
        elif isinstance(item, bytes):
            item = item.decode("latin-1")
        else:
            append("(" + _collapse(item) + ")")
            continue
        if "\n" in item or "\r" in item or len(item) > 1000:
            append(f"{{{len(item)}}}\r\n{item}")
        else:
            append('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(out)


def _ascii(value: str) -> str:
    return value.encode("ascii", "replace").decode("ascii")


# Header values, header blocks and address lists repeat across a mailbox's mail (a client's text part headers,
# the usual senders, X-Mailer): what the index makes of them is a pure function of their text, so the short
# ones are remembered. A long value is worked out every time (it would pin memory for little gain).
_CACHED = 512
_MISSING: Any = object()


_Key = TypeVar("_Key", str, bytes, str | None)
_Value = TypeVar("_Value")


def _remembered(function: Callable[[_Key], _Value]) -> Callable[[_Key], _Value]:
    """``function`` with its results for short keys (and None) kept in a bounded LRU memo."""
    cached = functools.lru_cache(maxsize=4096)(function)

    def lookup(key: _Key) -> _Value:
        return cached(key) if key is None or len(key) <= _CACHED else function(key)

    lookup.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return lookup


def _sanitized(value: str) -> str:
    """What compat32's ``Message.get`` gives for a raw value, as text: a value with 8-bit bytes (kept as
    surrogates) comes back as a Header object that prints each such byte as U+FFFD."""
    if value.isascii():
        return value
    return str(compat32.header_fetch_parse("", value))


def _parseparam(value: str) -> list[str]:
    """``email.message._parseparam``: the value split at the semicolons that are not inside quotes."""
    if '"' not in value:  # no quotes: every semicolon splits (its loop finds the same pieces one by one)
        return [_param_piece(piece) for piece in value.split(";")]
    s = ";" + value
    plist = []
    while s[:1] == ";":
        s = s[1:]
        end = s.find(";")
        while end > 0 and (s.count('"', 0, end) - s.count('\\"', 0, end)) % 2:
            end = s.find(";", end + 1)
        if end < 0:
            end = len(s)
        plist.append(_param_piece(s[:end]))
        s = s[end:]
    return plist


def _param_piece(f: str) -> str:
    if "=" in f:
        i = f.index("=")
        f = f[:i].strip().lower() + "=" + f[i + 1:].strip()
    return f.strip()


def _get_params(value: str) -> list[tuple[str, Any]]:
    """compat32 ``Message.get_params(header=...)`` for a header whose first value is ``value`` (sanitized):
    the value itself first, then each parameter unquoted, RFC 2231 ones as (charset, language, text)."""
    params = []
    for p in _parseparam(value):
        name, equals, val = p.partition("=")
        if equals:
            params.append((name.strip(), val.strip()))
        else:  # a bare attribute
            params.append((p.strip(), ""))
    if "*" not in value:
        # No RFC 2231 parameter (its names hold a "*"): decode_params would unquote each value and quote it
        # again, and get_params unquote that, which gives the value unquoted once.
        return [(k, email.utils.unquote(v)) for k, v in params]
    try:
        pairs = email.utils.decode_params(params)
    except (TypeError, ValueError):
        # A parameter both split (name*0=) and whole (name*=): the standard library gives up on the header.
        # The values as they stand, unquoted, rather than a message that cannot be delivered.
        return [(k, email.utils.unquote(v)) for k, v in params]
    decoded = []
    for k, v in pairs:
        decoded.append((k, (v[0], v[1], email.utils.unquote(v[2])) if isinstance(v, tuple) else email.utils.unquote(v)))
    return decoded


def _get_param(params: list[tuple[str, Any]], name: str) -> Any:
    """``Message.get_param`` over :func:`_get_params`'s list (``_MISSING`` when absent)."""
    for k, v in params:
        if k.lower() == name:
            return v
    return _MISSING


def _flat(params: list[tuple[str, Any]]) -> list[str] | None:
    """BODYSTRUCTURE's parameter list: the parameters (not the value itself) as NAME, value pairs."""
    flat: list[str] = []
    for name, value in params[1:]:
        if isinstance(value, tuple):
            value = email.utils.collapse_rfc2231_value(value)
        flat += [_ascii(name.upper()), _ascii(str(value))]
    return flat or None


class _Head(NamedTuple):
    """What the index needs from one MIME entity's header block, worked out once (the block's fields are
    looked up by a dict, not by ``Message.get`` scanning and lower-casing every field name per look-up)."""

    main: str
    sub: str
    content_type: str | None  # the first Content-Type value, sanitized (None: no such field)
    boundary: bytes | None  # a multipart's delimiter (None: no usable one, so no parts)
    encoding: str  # Content-Transfer-Encoding as the text decoder reads it (lower-case, "" if none)
    attachment: bool  # Content-Disposition: attachment (its text is not indexed)
    basic: str  # wire of BODY's header-given fields: leaf MAIN SUB params id description encoding; multipart SUB
    tail: str  # wire of BODYSTRUCTURE's extension data (multipart: SUB params and then that)


def _first_values(fields: list[tuple[str, str]]) -> dict[str, str]:
    """Each field's first raw value by lower-case name (what ``Message.get`` finds)."""
    first: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()
        if key not in first:
            first[key] = value
    return first


def _head_of(fields: list[tuple[str, str]]) -> _Head:
    """compat32's ``get_content_type``, ``get_params``, ``get_boundary`` and ``get_content_disposition`` on
    this header, and the BODYSTRUCTURE fields they give, as the Message-based index computed them."""
    first = _first_values(fields)

    def text(name: str) -> str | None:
        value = first.get(name)
        return None if value is None else header_text(value)

    raw_type = first.get("content-type")
    content_type = None if raw_type is None else _sanitized(raw_type)
    ctype = "text/plain"
    if content_type is not None:
        ctype = content_type.partition(";")[0].strip().lower()
        if ctype.count("/") != 1:
            ctype = "text/plain"
    main, _, sub = ctype.partition("/")
    type_params = None if content_type is None else _get_params(content_type)
    raw_disposition = first.get("content-disposition")
    disposition = None
    disp = None
    if raw_disposition is not None:
        disposition_value = _sanitized(raw_disposition)
        disposition = disposition_value.partition(";")[0].strip().lower()
        if disposition:
            disp = [_ascii(disposition.upper()), _flat(_get_params(disposition_value))]  # 8-bit: "?" as elsewhere
    raw_encoding = first.get("content-transfer-encoding")
    encoding = "" if raw_encoding is None else _sanitized(raw_encoding).strip().lower()
    subtype = _ascii(sub.upper())
    params = None if type_params is None else _flat(type_params)
    extension = [disp, text("content-language"), text("content-location")]
    if main == "multipart":
        boundary = None
        if type_params is not None:
            value = _get_param(type_params, "boundary")
            if value is not _MISSING:
                value = email.utils.collapse_rfc2231_value(value).rstrip()
                boundary = value.encode("utf-8", "surrogateescape") if value else None
        return _Head(main, sub, content_type, boundary, encoding, disposition == "attachment",
                     _collapse([subtype]), _collapse([subtype, params, *extension]))
    if main == "text" and not params:
        params = ["CHARSET", "US-ASCII"]
    transfer = (text("content-transfer-encoding") or "7BIT").strip().upper()
    basic = [_ascii(main.upper()), subtype, params, text("content-id"), text("content-description"), transfer]
    return _Head(main, sub, content_type, None, encoding, disposition == "attachment",
                 _collapse(basic), _collapse([text("content-md5"), *extension]))


@_remembered
def _head(block: bytes) -> _Head:
    """:func:`_head_of` a part's header block (remembered: a mail client writes the same text part headers
    into every message it sends)."""
    return _head_of(header_fields(block))


@_remembered
def _charset(content_type: str | None) -> str | None:
    """compat32 ``get_content_charset()`` for this (sanitized) Content-Type value."""
    if content_type is None:
        return None
    charset = _get_param(_get_params(content_type), "charset")
    if charset is _MISSING:
        return None
    if isinstance(charset, tuple):  # RFC 2231 encoded
        pcharset = charset[0] or "us-ascii"
        try:
            charset = str(charset[2].encode("raw-unicode-escape"), pcharset)
        except (LookupError, UnicodeError):
            charset = charset[2]
    try:
        charset.encode("us-ascii")
    except UnicodeError:
        return None
    return charset.lower()


_EMPTY_MULTIPART = _collapse([["TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 0, 0]])


class _Walk:
    """One walk of the raw MIME tree: BODYSTRUCTURE and BODY wire text (BODY is BODYSTRUCTURE without the
    extension data) and, in tree order, the text parts the search text comes from."""

    def __init__(self) -> None:
        self.texts: list[tuple[bytes, _Head]] = []

    def entity(self, head: _Head, body: bytes, depth: int) -> tuple[str, str]:
        # One Python frame per level of nesting, as the earlier walk had: a deeply nested message that it
        # indexed must not hit the recursion limit here.
        if head.main == "multipart":
            extended: list[str] = []
            basic: list[str] = []
            if head.boundary:
                for child in split_multipart(body, head.boundary):
                    block, child_body = split_header(child)
                    child_extended, child_basic = self.entity(_head(block), child_body, depth + 1)
                    extended.append(child_extended)
                    basic.append(child_basic)
            if not extended:  # RFC 3501 needs at least one part
                extended.append(_EMPTY_MULTIPART)
                basic.append(_EMPTY_MULTIPART)
            return f"({' '.join(extended)} {head.tail})", f"({' '.join(basic)} {head.basic})"
        size = len(body)
        if head.main != "text" and (head.main, head.sub) != ("message", "rfc822"):
            return f"({head.basic} {size} {head.tail})", f"({head.basic} {size})"  # no line count: not scanned
        lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
        if head.main == "message":
            block, inner_body = split_header(body)
            fields = header_fields(block)
            inner_envelope = _envelope(_first_values(fields))
            inner_extended, inner_basic = self.entity(_head_of(fields), inner_body, depth + 1)
            return (f"({head.basic} {size} {inner_envelope} {inner_extended} {lines} {head.tail})",
                    f"({head.basic} {size} {inner_envelope} {inner_basic} {lines})")
        if not head.attachment and depth <= _MAX_DEPTH:
            self.texts.append((body, head))
        return f"({head.basic} {size} {lines} {head.tail})", f"({head.basic} {size} {lines})"


@_remembered
def _addresses(value: str | None) -> str:
    """An address field of ENVELOPE by Twisted's ``parseAddr``, except that a list without one real address
    is NIL: Twisted gives a three-NIL "address" ``((NIL NIL NIL))`` that strict clients reject (an address
    has four fields)."""
    parsed = parseAddr(value)
    if all(isinstance(a, (list, tuple)) and len(a) < 4 for a in parsed):
        return "NIL"
    return _collapse([parsed])


def _envelope(first: dict[str, str]) -> str:
    """ENVELOPE (RFC 3501 7.4.2) as Twisted's ``getEnvelope`` gives it (with :func:`_addresses`), from each
    field's first raw value by lower-case name."""
    headers = {name: header_text(first[name]) for name in _ENVELOPE_FIELDS if name in first}
    from_ = headers.get("from")
    reply_to = headers.get("reply-to", from_)
    to, cc, bcc = headers.get("to"), headers.get("cc"), headers.get("bcc")
    # Reply-To, To, Cc and Bcc go through ``value and parseAddr(value)``: present but empty, they stay "".
    return "(" + " ".join([
        _collapse([headers.get("date"), headers.get("subject")]), _addresses(from_),
        _addresses(headers.get("sender", from_)),
        *(_addresses(value) if value else _collapse([value]) for value in (reply_to, to, cc, bcc)),
        _collapse([headers.get("in-reply-to"), headers.get("message-id")])]) + ")"


_ENVELOPE_FIELDS = ("date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id")


# str.lower() of text beyond ASCII runs character by character through the full Unicode case tables; for
# Latin-1 text (most European mail) it maps every character to one Latin-1 character, so a byte table does
# the same job, and turns CR, LF and TAB into spaces in the same pass.
# (tests/storage/test_message_index_stdlib.py checks that claim for every Latin-1 character.)
_LATIN1_FOLD = bytes(32 if c in b"\r\n\t" else ord(chr(c).lower()) for c in range(256))


def fold(text: str) -> str:
    """How SEARCH compares strings: case-insensitively (RFC 3501 6.4.4), whitespace runs as one space.
    (``_SPACES.sub`` in cheap steps: that regex replacing every single space between words cost ~2 ms
    per message body; after the C-level replaces only the rarer runs of spaces need a regex.) Latin-1 text
    (ASCII included) is folded as bytes by one table, a third of what ``str.lower`` and replaces cost."""
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        # CR LF becomes two spaces, not one, then one with the rest of its run: the same result, a replace
        # less. Lower-casing after the runs are gone gives the same text: no character lower-cases to or
        # from a space.
        text = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
        return _SPACE_RUNS.sub(" ", text).lower()
    return _SPACE_RUNS_BYTES.sub(b" ", data.translate(_LATIN1_FOLD)).decode("latin-1")


def _unescaped(value: str) -> str:
    """A header value as text: the header block is parsed as ASCII with the other bytes kept as surrogates,
    and raw 8-bit bytes in a header are UTF-8 (RFC 6532 section 3.2, what SMTPUTF8 mail carries); bytes
    that are not UTF-8 become U+FFFD. (Kept as surrogates, they could not be stored: the database refuses
    them, and such a message could not be delivered at all.)"""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _decoded(value: str) -> str:
    if "=?" not in value:
        # No RFC 2047 encoded word (they all start with "=?"): make_header would give the text back as it
        # is, after building a Header object for it (most of the header index's CPU).
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):  # e.g. bad base64: as it stands
        return value


@_remembered
def _header_text(value: str) -> tuple[str, str]:
    """A raw header value RFC 2047 decoded (with raw 8-bit text as UTF-8), and that folded for the header
    index (remembered: senders, recipients and mailer names recur)."""
    text = _decoded(_unescaped(value))
    return text, fold(text)[:MAX_HEADER_VALUE]


def _date(raw: str | None) -> dt.datetime | None:
    """compat32 ``parsedate_to_datetime(str(msg.get("Date")))`` for the first raw Date value."""
    if not raw:
        return None
    try:
        return email.utils.parsedate_to_datetime(_sanitized(raw))
    except (TypeError, ValueError, IndexError):
        return None


def _utc(value: dt.datetime) -> dt.datetime:
    """A floating Date (no zone) is taken as UTC, like every other index column."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _display(first: dict[str, str], name: str) -> str:
    """A header's value for the item's listing columns: RFC 2047 decoded and unfolded, case kept.
    From the compat32 header block already parsed (the ``email`` header registry costs a millisecond a
    message and these columns are only shown, never compared); ``first`` is each field's first raw value
    by lower-case name (what ``Message.get`` finds, before compat32 turns 8-bit text into a Header)."""
    raw = first.get(name)
    if raw is None:
        return ""
    return _SPACES.sub(" ", _header_text(raw)[0]).strip()


def _decoded_body(body: bytes, head: _Head) -> str:
    """A text part's body with its transfer encoding and charset undone (bad input decodes leniently)."""
    body = body[: MAX_TEXT * 4]  # enough for MAX_TEXT characters in any encoding
    try:
        if head.encoding == "base64":
            body = binascii.a2b_base64(body)
        elif head.encoding == "quoted-printable":
            body = binascii.a2b_qp(body)
    except (binascii.Error, ValueError):
        pass  # search the encoded text rather than nothing
    charset = _charset(head.content_type) or "us-ascii"
    try:
        return body.decode(charset, "replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", "replace")


def _text(parts: list[tuple[bytes, _Head]]) -> str:
    """The decoded text of the text/* entities that are not attachments, in tree order, HTML tags dropped,
    folded, until MAX_TEXT characters are reached (attachments are never decoded)."""
    chunks: list[str] = []
    budget = MAX_TEXT
    for body, head in parts:
        if budget <= 0:
            break
        text = _decoded_body(body, head)
        if head.sub == "html":
            text = _TAGS.sub(" ", text)
        text = fold(text)
        chunks.append(text)
        budget -= len(text)
    return " ".join(chunks)[:MAX_TEXT]


def _text_parts(head: _Head, body: bytes, depth: int, found: list[tuple[bytes, _Head]]) -> None:
    """The text parts :class:`_Walk` collects, in tree order, without building BODYSTRUCTURE on the way (the
    search indexer needs only them)."""
    if head.main == "multipart":
        if head.boundary:
            for child in split_multipart(body, head.boundary):
                block, child_body = split_header(child)
                _text_parts(_head(block), child_body, depth + 1, found)
    elif (head.main, head.sub) == ("message", "rfc822"):
        block, inner_body = split_header(body)
        _text_parts(_head_of(header_fields(block)), inner_body, depth + 1, found)
    elif head.main == "text" and not head.attachment and depth <= _MAX_DEPTH:
        found.append((body, head))


def search_fields(raw: bytes) -> tuple[list[tuple[str, str]], str]:
    """The SEARCH rows of a message: ``index_message_bytes(raw)``'s ``headers`` and ``text`` alone, for the
    search indexer, which has the rest already (a fifth less CPU than the whole index)."""
    raw = raw[:MAX_PARSE]
    block, body = split_header(raw)
    fields = header_fields(block)
    headers = [(name.strip().lower()[:200], _header_text(value)[1]) for name, value in fields[:MAX_HEADERS]]
    texts: list[tuple[bytes, _Head]] = []
    _text_parts(_head_of(fields), body, 0, texts)
    return headers, _text(texts)


def index_message_bytes(raw: bytes, search: bool = True) -> MessageIndex:
    """Everything :class:`MessageIndex` holds, from the raw message; without ``search``, no ``headers`` and no
    ``text`` (a delivery leaves those to the search backlog: decoding them was a fifth of its parse)."""
    raw = raw[:MAX_PARSE]
    block, body = split_header(raw)
    fields = header_fields(block)
    headers: list[tuple[str, str]] = []
    if search:
        for name, value in fields[:MAX_HEADERS]:
            headers.append((name.strip().lower()[:200], _header_text(value)[1]))
    first = _first_values(fields)
    date = _date(first.get("date"))
    walk = _Walk()
    extended, basic = walk.entity(_head_of(fields), body, 0)
    return MessageIndex(
        envelope=_envelope(first),
        bodystructure=extended,
        body=basic,
        sent_date=date.date() if date else None,  # the sender's own calendar day
        headers=headers,
        text=_text(walk.texts) if search else "",
        subject=_display(first, "subject"),
        from_addr=_display(first, "from"),
        to_addr=_display(first, "to"),
        message_id=_display(first, "message-id"),
        date=_utc(date) if date else None,
    )
