"""Non-synchronizing literals (RFC 7888 LITERAL+) on top of Twisted's synchronizing-literal parser.

A client sending ``{n+}`` does not wait for the ``+`` continuation, so: the
marker is rewritten to ``{n}`` and the continuation request is not sent; if the
command is held behind one still in flight, the literal's bytes are captured raw
at once (they must never be split into command lines) and replayed with it; and
if the command refuses the literal (APPEND over the size limit, a BAD argument),
its bytes are read and thrown away so they are never taken for commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.mail.imap4 import IMAP4Server, LiteralFile, LiteralString

_NONSYNC = re.compile(rb"\{(\d{1,10})\+\}\Z")


@dataclass
class HeldLiteral:
    """Literal bytes that arrived while their command was held in ``blocked``."""

    data: bytes


class NonSyncLiterals:
    _skip_continuation = False
    _swallow = False  # the rest of a command whose literal was refused is ignored
    _discard = 0  # literal bytes still to throw away
    _capture: bytearray | None = None
    _capture_size = 0
    _replay_after_capture = False

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 (Twisted's name)
        match = _NONSYNC.search(line)
        if self._swallow:
            self._swallow = match is not None
            if match is not None:
                self._start_discard(int(match.group(1)))
            return
        if match is None:
            super().lineReceived(line)  # type: ignore[misc]
            return
        size = int(match.group(1))
        line = line[:match.start()] + b"{%d}" % size
        if self.blocked is not None:
            self.blocked.append(line)
            self._start_capture(size)
            return
        if not self._take(line):
            self._swallow = True
            self._start_discard(size)

    def _take(self, line: bytes) -> bool:
        """Run a command line whose literal follows unasked; True if a parser now waits for the literal."""
        self._skip_continuation = True
        try:
            super().lineReceived(line)  # type: ignore[misc]
        finally:
            self._skip_continuation = False
        return self.parseState == "pending" and isinstance(self._pendingLiteral, (LiteralString, LiteralFile))

    def sendContinuationRequest(self, msg: bytes | None = b"Ready for additional command text") -> None:  # noqa: N802
        if self._skip_continuation:
            self._skip_continuation = False
            return
        super().sendContinuationRequest(msg)  # type: ignore[misc]

    # -- raw bytes: captured for a held command, or discarded -----------------------------
    def _start_capture(self, size: int) -> None:
        self._capture, self._capture_size = bytearray(), size
        self.setRawMode()
        if size == 0:
            self._finish_capture(b"")

    def _start_discard(self, size: int) -> None:
        if size:
            self._discard = size
            self.setRawMode()

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._capture is not None:
            room = self._capture_size - len(self._capture)
            self._capture += data[:room]
            if len(self._capture) >= self._capture_size:
                self._finish_capture(data[room:])
            return
        if self._discard:
            used = min(self._discard, len(data))
            self._discard -= used
            if not self._discard:
                self.setLineMode(data[used:])
            return
        super().rawDataReceived(data)  # type: ignore[misc]

    def _finish_capture(self, rest: bytes) -> None:
        assert self._capture is not None and self.blocked is not None
        self.blocked.append(HeldLiteral(bytes(self._capture)))  # type: ignore[arg-type]
        self._capture = None
        self.setLineMode(rest)  # later lines queue behind it
        if self._replay_after_capture and self._capture is None:
            self._replay_after_capture = False
            self._unblock()

    def _unblock(self) -> None:
        """Replay held lines in order; a held literal goes to the command line before it."""
        if self._capture is not None:
            self._replay_after_capture = True  # its command must not run before the literal is complete
            return
        commands = self.blocked
        self.blocked = None
        while commands and self.blocked is None:
            entry = commands.pop(0)
            if isinstance(entry, HeldLiteral):
                continue  # its command was refused before it
            if not (commands and isinstance(commands[0], HeldLiteral)):
                self.lineReceived(entry)
                continue
            held = commands.pop(0)
            if self._take(entry):
                IMAP4Server.rawDataReceived(self, held.data)  # type: ignore[arg-type]
                continue
            # Refused: drop the rest of that command (its remaining lines and literals).
            while commands and isinstance(commands[0], bytes):
                commands.pop(0)
                if not (commands and isinstance(commands[0], HeldLiteral)):
                    break
                commands.pop(0)
        if self.blocked is not None:
            self.blocked.extend(commands)
