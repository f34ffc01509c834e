"""UID (RFC 3501 6.4.8): the UID forms of COPY, FETCH, STORE, SEARCH, plus MOVE (RFC 6851) and EXPUNGE (RFC 4315)."""

from __future__ import annotations

import re

from twisted.mail.imap4 import IllegalClientResponse, IMAP4Server

_ATOM_THEN_ANYTHING = re.compile(IMAP4Server.atomre.pattern, re.DOTALL)
_UID_COMMANDS = (b"COPY", b"FETCH", b"STORE", b"SEARCH", b"MOVE")


class UidCommand:
    def arg_command_atom(self, line: bytes) -> tuple[bytes, bytes]:
        """UID's sub-command; the rest may hold an inline search literal with CRLF in it."""
        match = _ATOM_THEN_ANYTHING.match(line or b"")
        if match is None:
            raise IllegalClientResponse("Malformed ATOM")
        return match.group("atom"), match.group("rest") or b""

    def do_UID(self, tag: bytes, command: bytes, line: bytes) -> None:  # noqa: N802
        command = command.upper()
        if command == b"EXPUNGE":
            messages, rest = self.arg_seqset(line)
            if rest.strip():
                raise IllegalClientResponse("UID EXPUNGE takes one sequence set")
            self.do_EXPUNGE(tag, messages, uid=1)
            return
        if command not in _UID_COMMANDS:
            raise IllegalClientResponse("unknown UID command")
        self.dispatchCommand(tag, command, line, uid=1)

    select_UID = (do_UID, arg_command_atom, IMAP4Server.arg_line)
