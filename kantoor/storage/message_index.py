"""What the Store keeps about a message besides its bytes, computed once when it is delivered.

* ENVELOPE, BODYSTRUCTURE and BODY (RFC 3501 7.4.2) in their wire form, like
  Dovecot's index cache: FETCH writes them out without opening the body.
* Every header field decoded (RFC 2047) and lower-cased, and the decoded text of
  the text parts (transfer encoding and charset undone, HTML tags dropped),
  capped: SEARCH's string keys run as SQL ``LIKE`` over them.
* The Date header's calendar day for SENTBEFORE/SENTON/SENTSINCE.

Twisted's BODYSTRUCTURE reports part sizes including the part's headers,
lower-cases parameter values (boundaries are case-sensitive) and sends NIL where
the RFC wants a string (encoding), which strict clients reject; this one follows
the RFC. The wire form uses Twisted's quoting (``collapseNestedLists``) so it is
byte-for-byte what the IMAP frontend would have sent.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.header
import email.utils
import re
from dataclasses import dataclass, field
from typing import Any

from twisted.mail.imap4 import parseAddr

from kantoor.storage.mime import MimePart

# Caps that keep one message's index rows small whatever the message looks like.
MAX_HEADERS = 200
MAX_HEADER_VALUE = 2000
MAX_TEXT = 64 * 1024
# Bodies larger than this are indexed from their first MAX_PARSE bytes (the text parts come first).
MAX_PARSE = 8 * 1024 * 1024

_TAGS = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\n]+")
_SPACE_RUNS = re.compile(r"  +")


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


def _ascii(value: str) -> str:
    return value.encode("ascii", "replace").decode("ascii")


def _params(part: MimePart, header: str) -> list[str] | None:
    params = part.headers.get_params(header=header)
    if not params:
        return None
    flat: list[str] = []
    for name, value in params[1:]:  # the first entry is the value itself (e.g. "text/plain")
        if isinstance(value, tuple):
            value = email.utils.collapse_rfc2231_value(value)
        flat += [_ascii(name.upper()), _ascii(str(value))]
    return flat or None


def _header(part: MimePart, name: str) -> str | None:
    return part.first_headers().get(name)


def _extension(part: MimePart) -> list[Any]:
    disposition = part.headers.get_content_disposition()
    disp = [disposition.upper(), _params(part, "content-disposition")] if disposition else None
    return [_header(part, "content-md5"), disp, _header(part, "content-language"), _header(part, "content-location")]


def body_structure(part: MimePart, extended: bool) -> list[Any]:
    """The nested list ``collapseNestedLists`` turns into a BODYSTRUCTURE (or BODY) value."""
    return body_structures(part)[0 if extended else 1]


def body_structures(part: MimePart) -> tuple[list[Any], list[Any]]:
    """(BODYSTRUCTURE, BODY) from one walk of the MIME tree: BODY is BODYSTRUCTURE without the extension
    data, so the second walk a delivery made for it repeated every header look-up."""
    main, sub = part.content_type()
    if main == "multipart":
        extended_children, basic_children = [], []
        index = 0
        while True:
            try:
                child = part.getSubPart(index)
            except IndexError:
                break
            extended_child, basic_child = body_structures(child)
            extended_children.append(extended_child)
            basic_children.append(basic_child)
            index += 1
        if not extended_children:  # RFC 3501 needs at least one part
            extended_children.append(["TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 0, 0])
            basic_children.append(["TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 0, 0])
        subtype = _ascii(sub.upper())
        return ([*extended_children, subtype, _params(part, "content-type"), *_extension(part)[1:]],
                [*basic_children, subtype])
    params = _params(part, "content-type")
    if main == "text" and not params:
        params = ["CHARSET", "US-ASCII"]
    encoding = (_header(part, "content-transfer-encoding") or "7BIT").strip().upper()
    basic = [_ascii(main.upper()), _ascii(sub.upper()), params, _header(part, "content-id"),
             _header(part, "content-description"), encoding, len(part.body)]
    lines = part.body.count(b"\n") + (1 if part.body and not part.body.endswith(b"\n") else 0)
    extended = list(basic)
    if (main, sub) == ("message", "rfc822"):
        inner = MimePart(part.body)
        inner_envelope = envelope(inner)
        inner_extended, inner_basic = body_structures(inner)
        extended += [inner_envelope, inner_extended, lines]
        basic += [inner_envelope, inner_basic, lines]
    elif main == "text":
        extended.append(lines)
        basic.append(lines)
    extended += _extension(part)
    return extended, basic


def _twisted_envelope(part: MimePart) -> list[Any]:
    """Twisted's ``getEnvelope``, field for field, with each distinct address header parsed once: Sender
    and Reply-To are usually From again, and its address parsing (``email.utils.getaddresses``) was a
    fifth of the index's CPU (``tests/storage/test_message_index.py`` checks the two agree)."""
    headers = part.getHeaders(True)
    parsed: dict[str | None, list[Any]] = {}

    def addresses(value: str | None) -> list[Any]:
        if value not in parsed:
            parsed[value] = parseAddr(value)
        return parsed[value]

    from_ = headers.get("from")
    reply_to = headers.get("reply-to", from_)
    to, cc, bcc = headers.get("to"), headers.get("cc"), headers.get("bcc")
    return [headers.get("date"), headers.get("subject"), addresses(from_), addresses(headers.get("sender", from_)),
            reply_to and addresses(reply_to), to and addresses(to), cc and addresses(cc), bcc and addresses(bcc),
            headers.get("in-reply-to"), headers.get("message-id")]


def envelope(part: MimePart) -> list[Any]:
    """ENVELOPE (RFC 3501 7.4.2) by Twisted, except that a missing address header is NIL: Twisted gives a
    three-NIL "address" ``((NIL NIL NIL))`` that strict clients reject (an address has four fields)."""
    fields = _twisted_envelope(part)
    for index in range(2, 8):  # from, sender, reply-to, to, cc, bcc
        value = fields[index]
        if isinstance(value, list) and all(isinstance(a, (list, tuple)) and len(a) < 4 for a in value):
            fields[index] = None
    return fields


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


def fold(text: str) -> str:
    """How SEARCH compares strings: case-insensitively (RFC 3501 6.4.4), whitespace runs as one space.
    (``_SPACES.sub`` in cheap steps: that regex replacing every single space between words cost ~2 ms
    per message body; after the C-level replaces only the rarer runs of spaces need a regex.)"""
    # CR LF becomes two spaces, not one, then one with the rest of its run: the same result, a replace less.
    # The run regex goes over every text: a search for "  " first cost half as much as the regex, and a
    # text with a paragraph break has one anyway.
    text = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    return _SPACE_RUNS.sub(" ", text).lower()


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
    except (ValueError, LookupError, UnicodeError):
        return value


def _date(part: MimePart) -> dt.datetime | None:
    raw = part.headers.get("Date")
    if not raw:
        return None
    try:
        return email.utils.parsedate_to_datetime(str(raw))
    except (TypeError, ValueError, IndexError):
        return None


def _utc(value: dt.datetime) -> dt.datetime:
    """A floating Date (no zone) is taken as UTC, like every other index column."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _display(first: dict[str, str], name: str, decoded: dict[str, str]) -> str:
    """A header's value for the item's listing columns: RFC 2047 decoded and unfolded, case kept.
    From the compat32 header block already parsed (the ``email`` header registry costs a millisecond a
    message and these columns are only shown, never compared); ``first`` is each field's first raw value
    by lower-case name (what ``Message.get`` finds, before compat32 turns 8-bit text into a Header);
    ``decoded`` has the values the header index already decoded, by raw value."""
    raw = first.get(name)
    if raw is None:
        return ""
    text = decoded.get(raw)
    if text is None:
        text = _decoded(_unescaped(raw))
    return _SPACES.sub(" ", text).strip()


def _decoded_body(part: MimePart) -> str:
    """A text part's body with its transfer encoding and charset undone (bad input decodes leniently)."""
    body = part.body[: MAX_TEXT * 4]  # enough for MAX_TEXT characters in any encoding
    encoding = str(part.headers.get("Content-Transfer-Encoding", "")).strip().lower()
    try:
        if encoding == "base64":
            body = binascii.a2b_base64(body)
        elif encoding == "quoted-printable":
            body = binascii.a2b_qp(body)
    except (binascii.Error, ValueError):
        pass  # search the encoded text rather than nothing
    charset = part.headers.get_content_charset() or "us-ascii"
    try:
        return body.decode(charset, "replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", "replace")


def _text_parts(part: MimePart, out: list[str], budget: list[int], depth: int = 0) -> None:
    """Collect the decoded text of ``part``'s text/* entities that are not attachments, walking the raw MIME
    tree (attachments are skipped without being parsed, so a large PDF costs nothing here)."""
    if budget[0] <= 0 or depth > 20:
        return
    headers = part.headers
    main, sub = part.content_type()
    if main == "multipart":
        index = 0
        while budget[0] > 0:
            try:
                child = part.getSubPart(index)
            except IndexError:
                break
            _text_parts(child, out, budget, depth + 1)
            index += 1
    elif (main, sub) == ("message", "rfc822"):
        _text_parts(MimePart(part.body), out, budget, depth + 1)  # a forwarded message's text is text too
    elif main == "text" and headers.get_content_disposition() != "attachment":
        text = _decoded_body(part)
        if sub == "html":
            text = _TAGS.sub(" ", text)
        text = fold(text)
        out.append(text)
        budget[0] -= len(text)


def _text(top: MimePart) -> str:
    chunks: list[str] = []
    _text_parts(top, chunks, [MAX_TEXT])
    return " ".join(chunks)[:MAX_TEXT]


def index_message_bytes(raw: bytes) -> MessageIndex:
    """Everything :class:`MessageIndex` holds, from the raw message."""
    raw = raw[:MAX_PARSE]
    top = MimePart(raw)
    headers: list[tuple[str, str]] = []
    fields = list(top.headers.raw_items())
    decoded: dict[str, str] = {}  # raw value -> RFC 2047 decoded: Subject, From and To are decoded once, not twice
    for name, value in fields[:MAX_HEADERS]:
        text = decoded.get(value)
        if text is None:
            text = decoded[value] = _decoded(_unescaped(value))
        headers.append((name.strip().lower()[:200], fold(text)[:MAX_HEADER_VALUE]))
    first: dict[str, str] = {}
    for name, value in fields:
        first.setdefault(name.lower(), value)
    date = _date(top)
    extended, basic = body_structures(top)
    return MessageIndex(
        envelope=wire(envelope(top)),
        bodystructure=wire(extended),
        body=wire(basic),
        sent_date=date.date() if date else None,  # the sender's own calendar day
        headers=headers,
        text=_text(top),
        subject=_display(first, "subject", decoded),
        from_addr=_display(first, "from", decoded),
        to_addr=_display(first, "to", decoded),
        message_id=_display(first, "message-id", decoded),
        date=_utc(date) if date else None,
    )
