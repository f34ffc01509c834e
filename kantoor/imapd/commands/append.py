"""APPEND (RFC 3501 6.3.11) through the Store's one delivery path, with APPENDUID (RFC 4315)."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from twisted.internet.defer import Deferred
from twisted.mail.imap4 import IllegalClientResponse, IMAP4Server, _parseMbox

from kantoor.imapd.mailbox import Changes
from kantoor.imapd.replies import Refused
from kantoor.imapd.worker_threads import in_thread
from kantoor.storage import NotFound


def parse_internaldate(value: bytes) -> dt.datetime:
    """APPEND's date-time: ``"17-Jul-1996 02:44:25 -0700"`` (RFC 3501 9)."""
    try:
        return dt.datetime.strptime(value.decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z")
    except (ValueError, UnicodeDecodeError):
        raise IllegalClientResponse("invalid date-time") from None


class AppendCommand:
    def arg_message_literal(self, line: bytes) -> Deferred:
        """APPEND's message literal, refused with [TOOBIG] before a byte of it is read."""
        if not line or line[:1] != b"{" or line[-1:] != b"}":
            raise IllegalClientResponse("missing message literal")
        try:
            size = int(line[1:-1])
        except ValueError:
            raise IllegalClientResponse("bad literal size") from None
        limit = self.context.settings.limits.max_message_bytes
        if size > limit:
            raise Refused("TOOBIG", f"message larger than {limit} bytes")
        return self._fileLiteral(size)

    def do_APPEND(self, tag: bytes, name: bytes, flags: list[Any] | None, date: bytes | None,  # noqa: N802
                  message: io.IOBase) -> None:
        mailbox = _parseMbox(name)
        flag_list = [f.decode("ascii", "replace") for f in (flags or []) if isinstance(f, bytes)]
        internaldate = parse_internaldate(date) if date else None
        raw: Any = message.getvalue() if isinstance(message, io.BytesIO) else message
        store, account = self.context.store, self.account
        limit = self.context.settings.limits.max_message_bytes

        def work() -> tuple[Any, Any]:
            try:
                # The mailbox is looked up in the delivery's own write transaction (Store.append_message),
                # not in a read transaction before it (account.find): one transaction less per APPEND.
                owner, path = account.locate(mailbox)
                return store.append_message(owner, path, raw, actor=account.principal_id, flags=flag_list,
                                            internaldate=internaldate, max_size=limit)
            except NotFound:
                raise Refused("TRYCREATE", "no such mailbox") from None
            finally:
                message.close()  # large literals are spooled to a temporary file

        def done(result: tuple[Any, Any]) -> Deferred | None:
            coll, item = result
            reply = b"[APPENDUID %d %d] APPEND completed" % (coll.uidvalidity, item.uid)
            if self.mbox is not None and self.mbox.id == coll.id:
                def refreshed(changes: Changes) -> None:
                    self._send_changes(changes)
                    self.sendPositiveResponse(tag, reply)
                return self.mbox.refresh().addCallback(refreshed)
            self.sendPositiveResponse(tag, reply)
            return None

        self._run(tag, lambda: in_thread(work), done)

    auth_APPEND = (do_APPEND, IMAP4Server.arg_astring, IMAP4Server.opt_plist, IMAP4Server.opt_datetime,
                   arg_message_literal)
    select_APPEND = auth_APPEND
