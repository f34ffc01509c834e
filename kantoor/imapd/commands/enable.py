"""ENABLE (RFC 5161): the client turns on extensions that change how the server talks (CONDSTORE, QRESYNC)."""

from __future__ import annotations

from twisted.mail.imap4 import IMAP4Server

# Extensions ENABLE can turn on; the others a client names are ignored (RFC 5161 3.1).
ENABLEABLE = (b"CONDSTORE", b"QRESYNC")


def uid_set(uids: object) -> bytes:
    """A compact sequence set (``1:3,7``) of UIDs, for VANISHED."""
    numbers = sorted(set(uids))  # type: ignore[call-overload]
    ranges: list[bytes] = []
    start = prev = None
    for n in numbers + [None]:
        if start is not None and (n is None or n != prev + 1):
            ranges.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
            start = None
        if n is not None and start is None:
            start = n
        prev = n
    return b",".join(ranges)


class EnableCommand:
    condstore = False  # RFC 7162: MODSEQ in untagged FETCH responses once enabled
    qresync = False  # RFC 7162 3.2: VANISHED instead of EXPUNGE once enabled

    def do_ENABLE(self, tag: bytes, line: bytes) -> None:  # noqa: N802
        names = [n.upper() for n in (line or b"").split()]
        if not names:
            self.sendBadResponse(tag, b"ENABLE needs at least one capability")
            return
        enabled = [n for n in ENABLEABLE if n in names]
        if b"CONDSTORE" in enabled:
            self.condstore = True
        if b"QRESYNC" in enabled:
            self.qresync = self.condstore = True  # QRESYNC implies CONDSTORE (RFC 7162 3.2.3)
        self.sendUntaggedResponse(b" ".join([b"ENABLED", *enabled]))
        self.sendPositiveResponse(tag, b"ENABLE completed")

    auth_ENABLE = (do_ENABLE, IMAP4Server.arg_line)
    select_ENABLE = auth_ENABLE
