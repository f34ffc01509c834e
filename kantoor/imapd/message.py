"""One message of the selected mailbox as Twisted's IMessage: a Store row, plus its bytes while a FETCH needs them.

FLAGS, UID, RFC822.SIZE, INTERNALDATE, ENVELOPE, BODYSTRUCTURE and BODY come from
the row (the Store keeps their wire forms since delivery). Only BODY[...] /
RFC822* sections need the bytes: they are read in a worker thread just before
the message is written out (:meth:`StoredMessage.load`) and dropped right after
(:meth:`StoredMessage.unload`), so a session never keeps a mailbox in memory.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import re

from twisted.mail.interfaces import IMessageIMAP, IMessageIMAPFile
from zope.interface import implementer

from kantoor.storage import Store
from kantoor.storage.mail_views import MessageRow
from kantoor.storage.mime import MimePart, header_complete, split_header

# How far into a body we look for the end of the header block when only headers are needed.
HEADER_READ_LIMIT = 256 * 1024


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


@implementer(IMessageIMAP, IMessageIMAPFile)
class StoredMessage:
    """A message of the selected mailbox; ``raw`` and ``part`` are set only while its bytes are loaded.

    The MIME tree is built on first use of ``part``: a FETCH of the whole message
    (``BODY[]``, what syncing clients ask) sends ``raw`` as it is.
    """

    def __init__(self, mailbox_id: int, actor: int, row: MessageRow, recent: bool = False) -> None:
        self.mailbox_id = mailbox_id
        self.actor = actor
        self.row = row
        self.recent = recent
        self.raw: bytes | None = None  # the whole message, or its header block only (not ``full``)
        self._part: MimePart | None = None
        self.full = False

    @property
    def part(self) -> MimePart | None:
        if self._part is None and self.raw is not None:
            self._part = MimePart(self.raw)
        return self._part

    # -- loading (worker thread) -------------------------------------------------
    def load(self, store: Store, headers_only: bool = False) -> None:
        """Read the bytes Twisted will need: the header block only, or the whole message."""
        if self.raw is not None and (self.full or headers_only):
            return
        self._part = None
        if headers_only:
            head = store.message_bytes(self.mailbox_id, self.row.id, self.actor, limit=HEADER_READ_LIMIT)
            if not header_complete(head):
                head = store.message_bytes(self.mailbox_id, self.row.id, self.actor)
            self.raw = split_header(head)[0]
            self.full = False
        else:
            self.raw = store.message_bytes(self.mailbox_id, self.row.id, self.actor)
            self.full = True

    def load_bytes(self, data: bytes, headers_only: bool) -> None:
        """Use bytes read for a whole batch (:meth:`Store.message_bodies`); the header block only if so asked."""
        self.raw = split_header(data)[0] if headers_only else data
        self._part = None
        self.full = not headers_only

    def unload(self) -> None:
        self.raw = None
        self._part = None
        self.full = False

    def _loaded(self) -> MimePart:
        part = self.part
        if part is None:
            raise RuntimeError("message bytes not loaded")  # a bug in the caller, never the client's fault
        return part

    # -- IMessageIMAP --------------------------------------------------------------
    @property
    def uid(self) -> int:
        return self.row.uid

    @property
    def flags(self) -> list[str]:
        return [*self.row.flags, "\\Recent"] if self.recent else self.row.flags

    def getUID(self) -> int:  # noqa: N802
        return self.uid

    def getFlags(self) -> list[str]:  # noqa: N802
        return self.flags

    def getInternalDate(self) -> str:  # noqa: N802
        when = self.row.internaldate
        if when.tzinfo is None:  # SQLite hands timestamps back naive; they are stored in UTC
            when = when.replace(tzinfo=dt.UTC)
        return email.utils.format_datetime(when)

    def getSize(self) -> int:  # noqa: N802
        return self.row.size

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
