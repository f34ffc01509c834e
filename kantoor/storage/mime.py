"""A raw MIME tree that keeps exact bytes: sections for FETCH BODY[...], and the input of the message index.

Python's ``email`` parser re-folds and re-encodes what it re-serialises, so IMAP
sections (which must be byte-exact) are cut from the raw bytes here; ``email``
only parses header blocks.
"""

from __future__ import annotations

import io
import re
from email import errors
from email.message import Message
from email.policy import compat32

_HEADER_END = re.compile(rb"\r?\n\r?\n")
# The patterns of email.feedparser: line breaks, a header or continuation line, a line's end.
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")
_HEADER_LINE = re.compile(r"From |[\041-\071\073-\176]*:|[\t ]")
_END_OF_LINE = re.compile(r"(\r\n|\r|\n)\Z")
# A header block of plain "Name: value" fields with folded continuations and one kind of line end, ending in
# its blank line: the common case, which header_fields reads with one regex instead of a loop over lines.
_FIELD_NAME = r"[\041-\071\073-\176]+"
_PLAIN_BLOCK = {
    eol: (re.compile(rf"(?:{_FIELD_NAME}:[^\r\n]*{eol}(?:[ \t][^\r\n]*{eol})*)*{eol}"),
          re.compile(rf"({_FIELD_NAME}):[ \t]*([^\r\n]*(?:{eol}[ \t][^\r\n]*)*){eol}"))
    for eol in ("\r\n", "\n")
}


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    """(header block including its terminating blank line, body) — BODY[HEADER] must be exact bytes."""
    if raw.startswith(b"\r\n"):
        return b"\r\n", raw[2:]
    if raw.startswith(b"\n"):
        return b"\n", raw[1:]
    match = _HEADER_END.search(raw)
    if match is None:
        return raw, b""
    return raw[: match.end()], raw[match.end():]


def header_complete(head: bytes) -> bool:
    """Whether ``head`` (the start of a message) already holds the whole header block."""
    return bool(_HEADER_END.search(head)) or head.startswith((b"\r\n", b"\n"))


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The raw parts between ``--boundary`` lines (RFC 2046 5.1.1), preamble and epilogue dropped.

    A delimiter is ``--boundary`` at the start of a line, optionally ``--`` (the
    last one), then only blanks to the end of the line; the line break before it
    belongs to the delimiter, not to the part. Found with ``bytes.find`` (a regex
    anchored at line starts scans every byte of a large attachment).
    """
    marker = b"--" + boundary
    parts: list[bytes] = []
    start: int | None = None
    position = 0
    while True:
        found = body.find(marker, position)
        if found < 0:
            break
        position = found + 1
        if found and body[found - 1:found] != b"\n":
            continue  # not at the start of a line
        after = found + len(marker)
        closing = body[after:after + 2] == b"--"
        if closing:
            after += 2
        end_of_line = body.find(b"\n", after)
        if body[after:end_of_line if end_of_line >= 0 else len(body)].strip(b" \t\r"):
            continue  # "--boundary" followed by more text: not a delimiter
        line_break = found - 2 if body[found - 2:found] == b"\r\n" else max(found - 1, 0)
        if start is not None:
            parts.append(body[start:line_break])
        if closing:
            return parts
        start = position = end_of_line + 1 if end_of_line >= 0 else len(body)
    if start is not None:  # unterminated multipart: keep what follows the last delimiter
        parts.append(body[start:])
    return parts


def header_text(value: str) -> str:
    """A header value as IMAP sends it: ASCII (8-bit bytes that are not RFC 2047 encoded become "?"), unfolded."""
    if value.isascii() and "\n" not in value:
        return value  # what the rest gives for it, without the round trip through bytes and a regex
    raw = value.encode("utf-8", "surrogateescape")
    return re.sub(r"\r?\n", "", raw.decode("ascii", "replace").replace("\ufffd", "?"))


def parse_header_block(raw: bytes) -> Message:
    """What ``BytesHeaderParser(policy=compat32).parsebytes(raw)`` gives — the same header list, unixfrom,
    defects and payload — in one pass over the lines: the feed parser's buffered, line-by-line generator
    machinery was two thirds of a delivery's header parsing (tests/storage/test_mime.py compares the two
    on edge cases and random header blocks)."""
    text = raw.decode("ascii", "surrogateescape")
    pieces = _LINE_BREAK.split(text)
    lines = [pieces[i] + pieces[i + 1] for i in range(0, len(pieces) - 1, 2)]
    if pieces[-1]:
        lines.append(pieces[-1])
    msg = Message(policy=compat32)
    end = rest = len(lines)
    for index, line in enumerate(lines):
        if not _HEADER_LINE.match(line):
            end = index
            if line[0] in "\r\n":
                rest = index + 1  # the blank line between header and body is dropped
            else:
                msg.defects.append(errors.MissingHeaderBodySeparatorDefect())
                rest = index  # a line that is no header starts the body
            break
    pushed_back = _parse_headers(msg, lines[:end])
    msg.set_payload(pushed_back + "".join(lines[rest:]))
    return msg


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """The (name, value) fields ``parse_header_block(raw).raw_items()`` lists, without building the Message:
    a block of plain fields (one kind of line end, no "From " line, no stray line, ending in the blank line)
    is read with one regex; anything else goes through parse_header_block itself (tests/storage/test_mime.py
    compares the two on edge cases and random header blocks)."""
    text = raw.decode("ascii", "surrogateescape")
    block, field = _PLAIN_BLOCK["\n" if "\r" not in text else "\r\n"]
    if block.fullmatch(text):
        # header_source_parse: the value's leading blanks go, its folds stay, its last line end goes.
        return field.findall(text)
    return list(parse_header_block(raw).raw_items())


def _parse_headers(msg: Message, lines: list[str]) -> str:
    """email.feedparser's ``_parse_headers`` under compat32 (``header_source_parse``); returns the line it
    pushes back into the body ("" if none)."""
    name = ""
    value: list[str] = []
    last = len(lines) - 1
    for lineno, line in enumerate(lines):
        if line[0] in " \t":
            if not name:
                msg.defects.append(errors.FirstHeaderLineIsContinuationDefect(line))
                continue
            value.append(line)
            continue
        if name:
            msg.set_raw(*_source_parse(value))
            name, value = "", []
        if line.startswith("From "):
            if lineno == 0:
                match = _END_OF_LINE.search(line)
                msg.set_unixfrom(line[:-len(match.group(0))] if match else line)
                continue
            if lineno == last:
                return line  # probably the body's first line
            msg.defects.append(errors.MisplacedEnvelopeHeaderDefect(line))
            continue
        colon = line.find(":")
        if colon == 0:
            msg.defects.append(errors.InvalidHeaderDefect("Missing header name."))
            continue
        name, value = line[:colon], [line]
    if name:
        msg.set_raw(*_source_parse(value))
    return ""


def _source_parse(lines: list[str]) -> tuple[str, str]:
    """compat32's ``header_source_parse``."""
    name, value = lines[0].split(":", 1)
    value = value.lstrip(" \t") + "".join(lines[1:])
    return name, value.rstrip("\r\n")


class MimePart:
    """One MIME entity parsed from raw bytes; sub-parts keep their exact bytes.

    It has the methods Twisted's IMessagePart asks for (``getHeaders`` …), so
    Twisted's envelope code reads it directly.
    """

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.header_block, self.body = split_header(raw)
        self._headers: Message | None = None
        self._parts: list[MimePart] | None = None
        self._first: dict[str, str] | None = None
        self._type: tuple[str, str] | None = None

    @property
    def headers(self) -> Message:
        if self._headers is None:
            self._headers = parse_header_block(self.header_block)
        return self._headers

    def content_type(self) -> tuple[str, str]:
        """(main type, subtype) as ``email`` gives them (text/plain by default), worked out once: the index
        asks each part several times, and every ask scanned and lower-cased all its header names."""
        if self._type is None:
            main, _, sub = self.headers.get_content_type().partition("/")
            self._type = (main, sub)
        return self._type

    def first_headers(self) -> dict[str, str]:
        """Each header field's first value as IMAP sends it (:func:`header_text`), by lower-case name, in the
        message's order: built once per part (ENVELOPE and BODYSTRUCTURE ask for a dozen fields)."""
        if self._first is None:
            first: dict[str, str] = {}
            for name, value in self.headers.raw_items():
                key = name.lower()
                if key not in first:
                    first[key] = header_text(value)
            self._first = first
        return self._first

    def getHeaders(self, negate: bool, *names: bytes | str) -> dict[str, str]:  # noqa: N802 (Twisted's name)
        wanted = {(n.decode("ascii", "replace") if isinstance(n, bytes) else n).lower() for n in names}
        first = self.first_headers()
        if wanted:
            result = {key: value for key, value in first.items() if (key in wanted) != negate}
        else:
            result = dict(first)
        if "content-type" in wanted and not negate and "content-type" not in result:
            # RFC 2045 5.2: no Content-Type means text/plain in US-ASCII (BODYSTRUCTURE needs it spelled out).
            result["content-type"] = "text/plain; charset=us-ascii"
        return result

    def getBodyFile(self) -> io.BytesIO:  # noqa: N802
        return io.BytesIO(self.body)

    def getSize(self) -> int:  # noqa: N802
        return len(self.raw)

    def _boundary(self) -> bytes | None:
        if self.content_type()[0] != "multipart":
            return None
        boundary = self.headers.get_boundary()
        return boundary.encode("utf-8", "surrogateescape") if boundary else None

    def isMultipart(self) -> bool:  # noqa: N802
        return self._boundary() is not None

    def getSubPart(self, part: int) -> MimePart:  # noqa: N802
        if self._parts is None:
            boundary = self._boundary()
            self._parts = [MimePart(p) for p in split_multipart(self.body, boundary)] if boundary else []
        return self._parts[part]  # IndexError tells Twisted there are no more parts
