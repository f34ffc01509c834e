"""STORE, EXPUNGE and COPY (RFC 3501 6.4.2-6.4.7; COPYUID from RFC 4315)."""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import deferToThread
from twisted.mail.imap4 import IMAP4Server, _parseMbox

from kantoor.imapd.replies import Refused
from kantoor.storage import NotFound


class MessageCommands:
    def do_STORE(self, tag: bytes, messages: Any, mode: bytes, flags: list[bytes], uid: int = 0) -> None:  # noqa: N802
        mode = mode.upper()
        if mode not in (b"FLAGS", b"+FLAGS", b"-FLAGS", b"FLAGS.SILENT", b"+FLAGS.SILENT", b"-FLAGS.SILENT"):
            self.sendBadResponse(tag, b"unknown STORE data item")
            return
        silent = mode.endswith(b".SILENT")
        how = 1 if mode.startswith(b"+") else -1 if mode.startswith(b"-") else 0
        names = [f.decode("ascii", "replace") for f in flags]
        mbox = self.mbox

        def done(result: dict[int, list[str]]) -> None:
            if not silent:
                for seq, new in sorted(result.items()):
                    uid_part = b" UID %d" % mbox.getUID(seq) if uid else b""
                    self.sendUntaggedResponse(b"%d FETCH (FLAGS (%s)%s)" % (seq, " ".join(new).encode(), uid_part))
            self.sendPositiveResponse(tag, b"STORE completed")

        self._run(tag, lambda: mbox.store(messages, names, how, uid=bool(uid)), done)

    select_STORE = (do_STORE, IMAP4Server.arg_seqset, IMAP4Server.arg_atom, IMAP4Server.arg_flaglist)

    def do_EXPUNGE(self, tag: bytes) -> None:  # noqa: N802
        def done(expunged: list[int]) -> None:
            for seq in expunged:
                self.sendUntaggedResponse(b"%d EXPUNGE" % seq)
            self.sendPositiveResponse(tag, b"EXPUNGE completed")

        self._run(tag, self.mbox.expunge, done)

    select_EXPUNGE = (do_EXPUNGE,)

    def do_COPY(self, tag: bytes, messages: Any, name: bytes, uid: int = 0) -> None:  # noqa: N802
        mailbox = _parseMbox(name)
        chosen = self.mbox.select(messages, bool(uid))
        store, account = self.context.store, self.account

        def work() -> bytes:
            try:
                target = account.find(mailbox)
            except NotFound:
                raise Refused("TRYCREATE", "no such mailbox") from None
            source_uids, new_uids = [], []
            for _, message in chosen:
                item = message.item
                copy_ = store.deliver_message(target.id, store.open_body(item), actor=account.principal_id,
                                              flags=message.flags, internaldate=item.internaldate)
                source_uids.append(str(message.uid))
                new_uids.append(str(copy_.uid))
            if not chosen:
                return b"COPY completed"
            return b"[COPYUID %d %s %s] COPY completed" % (
                target.uidvalidity, ",".join(source_uids).encode(), ",".join(new_uids).encode())

        self._run(tag, lambda: deferToThread(work), lambda reply: self.sendPositiveResponse(tag, reply))

    select_COPY = (do_COPY, IMAP4Server.arg_seqset, IMAP4Server.arg_finalastring)
