"""Stored messages as Twisted's IMessage: an Item row plus its raw bytes, parsed on demand.

Twisted computes ENVELOPE, BODYSTRUCTURE and SEARCH from these objects
synchronously, on the reactor. So the bytes are read from the Store beforehand
in a worker thread (:meth:`StoredMessage.load`) and dropped again after use
(:meth:`StoredMessage.unload`): a session never keeps a whole mailbox in memory.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from twisted.mail.interfaces import IMessageIMAP, IMessageIMAPFile, IMessageIMAPPart
from zope.interface import implementer

from kantoor.storage import Store
from kantoor.storage.models import Item

_HEADER_END = re.compile(rb"\r?\n\r?\n")
# How far into a body we look for the end of the header block when only headers are needed.
HEADER_READ_LIMIT = 256 * 1024


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


def split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The raw parts between ``--boundary`` lines (RFC 2046 5.1.1), preamble and epilogue dropped."""
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            parts.append(body[start:match.start()])
        if match.group(1):
            return parts
        start = match.end()
    if start is not None:  # unterminated multipart: keep what follows the last delimiter
        parts.append(body[start:])
    return parts


def _header_text(value: str) -> str:
    # Twisted encodes header values as ASCII; 8-bit header bytes (not RFC 2047 encoded)
    # become "?" instead of crashing the FETCH.
    raw = value.encode("utf-8", "surrogateescape")
    return re.sub(r"\r?\n", "", raw.decode("ascii", "replace").replace("\ufffd", "?"))


def filter_header_lines(header_block: bytes, names: list[bytes], negate: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the matching header lines, byte-exact, plus the blank line."""
    wanted = {n.lower().rstrip(b":") for n in names}
    lines = re.split(rb"(?<=\n)", header_block)
    out: list[bytes] = []
    keep = False
    for line in lines:
        if not line or line in (b"\r\n", b"\n"):
            continue
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        keep = (name in wanted) != negate
        if keep:
            out.append(line)
    return b"".join(out) + b"\r\n"


@implementer(IMessageIMAPPart)
class MimePart:
    """One MIME entity parsed from raw bytes; sub-parts keep their exact bytes."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.header_block, self.body = split_header(raw)
        self._headers: Message | None = None
        self._parts: list[MimePart] | None = None

    @property
    def headers(self) -> Message:
        if self._headers is None:
            self._headers = BytesHeaderParser(policy=compat32).parsebytes(self.header_block)
        return self._headers

    def getHeaders(self, negate: bool, *names: bytes | str) -> dict[str, str]:  # noqa: N802 (Twisted's name)
        wanted = {(n.decode("ascii", "replace") if isinstance(n, bytes) else n).lower() for n in names}
        result: dict[str, str] = {}
        for name, value in self.headers.raw_items():
            key = name.lower()
            if wanted and (key in wanted) == negate:
                continue
            result.setdefault(key, _header_text(value))
        if "content-type" in wanted and not negate and "content-type" not in result:
            # RFC 2045 5.2: no Content-Type means text/plain in US-ASCII (BODYSTRUCTURE needs it spelled out).
            result["content-type"] = "text/plain; charset=us-ascii"
        return result

    def getBodyFile(self) -> io.BytesIO:  # noqa: N802
        return io.BytesIO(self.body)

    def getSize(self) -> int:  # noqa: N802
        return len(self.raw)

    def _boundary(self) -> bytes | None:
        if self.headers.get_content_maintype() != "multipart":
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


@implementer(IMessageIMAP, IMessageIMAPFile)
class StoredMessage:
    """A message of the selected mailbox; ``part`` is set only while its bytes are loaded."""

    def __init__(self, item: Item) -> None:
        self.item = item
        self.part: MimePart | None = None
        self.full = False

    # -- loading (worker thread) -------------------------------------------------
    def load(self, store: Store, headers_only: bool = False) -> None:
        """Read the bytes Twisted will need: the header block only, or the whole message."""
        if self.part is not None and (self.full or headers_only):
            return
        if headers_only:
            with store.open_body(self.item) as fh:
                head = b""
                while len(head) < HEADER_READ_LIMIT:
                    chunk = fh.read(16 * 1024)
                    if not chunk:
                        break
                    head += chunk
                    if _HEADER_END.search(head) or head.startswith((b"\r\n", b"\n")):
                        break
            self.part = MimePart(split_header(head)[0])
            self.full = False
        else:
            self.part = MimePart(store.read_body(self.item))
            self.full = True

    def unload(self) -> None:
        self.part = None
        self.full = False

    def _loaded(self) -> MimePart:
        if self.part is None:
            raise RuntimeError("message bytes not loaded")  # a bug in the caller, never the client's fault
        return self.part

    # -- IMessageIMAP --------------------------------------------------------------
    @property
    def uid(self) -> int:
        return int(self.item.uid or 0)

    @property
    def flags(self) -> list[str]:
        return self.item.flags.split() if self.item.flags else []

    def getUID(self) -> int:  # noqa: N802
        return self.uid

    def getFlags(self) -> list[str]:  # noqa: N802
        return self.flags

    def getInternalDate(self) -> str:  # noqa: N802
        when = self.item.internaldate or self.item.created_at
        if when.tzinfo is None:  # SQLite hands timestamps back naive; they are stored in UTC
            when = when.replace(tzinfo=dt.UTC)
        return email.utils.format_datetime(when)

    def getSize(self) -> int:  # noqa: N802
        return int(self.item.size)

    def getHeaders(self, negate: bool, *names: bytes | str) -> dict[str, str]:  # noqa: N802
        return self._loaded().getHeaders(negate, *names)

    def getBodyFile(self) -> io.BytesIO:  # noqa: N802
        return self._loaded().getBodyFile()

    def isMultipart(self) -> bool:  # noqa: N802
        return self._loaded().isMultipart()

    def getSubPart(self, part: int) -> MimePart:  # noqa: N802
        return self._loaded().getSubPart(part)

    def open(self) -> io.BytesIO:
        return io.BytesIO(self._loaded().raw)
