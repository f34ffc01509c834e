"""Mailbox commands: SELECT/EXAMINE (with CONDSTORE, QRESYNC), CLOSE, UNSELECT (RFC 3691), CREATE, DELETE, STATUS."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.mail.imap4 import IMAP4Server, _parseMbox, collapseNestedLists

from kantoor.imapd.account import canonical_name, strict_name
from kantoor.imapd.commands.qresync import Resync, SelectParams, parse_select_params
from kantoor.imapd.mailbox import SYSTEM_FLAGS, SelectedMailbox


class MailboxCommands:
    def _leave_mailbox(self) -> None:
        if self._stop_watching is not None:
            self._stop_watching()
            self._stop_watching = None
        if self.mbox is not None:
            self.mbox.removeListener(self)
            self.mbox = None
        if self.state == "select":
            self.state = "auth"

    def arg_select_params(self, line: bytes) -> tuple[SelectParams, bytes]:
        return parse_select_params(line)

    def _selectWork(self, tag: bytes, name: bytes, params: SelectParams, rw: int,  # noqa: N802
                    cmdName: bytes) -> None:  # noqa: N803
        if params.qresync is not None and not self.qresync:
            self.sendBadResponse(tag, b"ENABLE QRESYNC first")  # RFC 7162 3.2.5
            return
        if params.condstore:
            self.condstore = True  # RFC 7162 3.1.8
        if self.qresync and self.mbox is not None:
            self.sendPositiveResponse(None, b"[CLOSED] previous mailbox closed")  # RFC 7162 3.2.11
        self._leave_mailbox()
        mailbox = _parseMbox(name)
        self._run(tag, lambda: self.account.select(mailbox, rw),
                  lambda mbox: self._cbSelectWork(mbox, cmdName, tag, params.qresync))

    def _cbSelectWork(self, mbox: SelectedMailbox | None, cmdName: bytes, tag: bytes,  # noqa: N802, N803
                      resync: Resync | None = None) -> Deferred | None:
        if mbox is None:
            self.sendNegativeResponse(tag, b"[NONEXISTENT] no such mailbox")
            return
        flags = " ".join(SYSTEM_FLAGS).encode()
        self.sendUntaggedResponse(b"FLAGS (" + flags + b")")
        self.sendUntaggedResponse(b"%d EXISTS" % mbox.getMessageCount())
        self.sendUntaggedResponse(b"%d RECENT" % mbox.getRecentCount())
        unseen = mbox.firstUnseen()
        if unseen is not None:
            self.sendPositiveResponse(None, b"[UNSEEN %d] first unseen message" % unseen)
        permanent = " ".join(mbox.permanent_flags()).encode()
        self.sendPositiveResponse(None, b"[PERMANENTFLAGS (" + permanent + b")] flags you can change")
        self.sendPositiveResponse(None, b"[UIDVALIDITY %d] UIDs valid" % mbox.getUIDValidity())
        self.sendPositiveResponse(None, b"[UIDNEXT %d] predicted next UID" % mbox.getUIDNext())
        self.sendPositiveResponse(None, b"[HIGHESTMODSEQ %d] highest modseq" % mbox.highest_modseq)
        mode = b"[READ-WRITE]" if mbox.isWriteable() else b"[READ-ONLY]"
        self.mbox = mbox
        self.state = "select"
        mbox.addListener(self)
        self._watch(mbox)
        done = mode + b" " + cmdName + b" completed"
        resynced = self._resync(mbox, resync) if resync is not None else None
        if resynced is None:
            self.sendPositiveResponse(tag, done)
            return None
        return resynced.addCallback(lambda _: self.sendPositiveResponse(tag, done))

    auth_SELECT = (_selectWork, IMAP4Server.arg_astring, arg_select_params, 1, b"SELECT")
    select_SELECT = auth_SELECT
    auth_EXAMINE = (_selectWork, IMAP4Server.arg_astring, arg_select_params, 0, b"EXAMINE")
    select_EXAMINE = auth_EXAMINE

    def do_CLOSE(self, tag: bytes) -> None:  # noqa: N802
        mbox = self.mbox

        def done(_: object) -> None:
            self._leave_mailbox()
            self.sendPositiveResponse(tag, b"CLOSE completed")

        # CLOSE expunges silently (RFC 3501 6.4.2), only in a read-write mailbox, and only with the right
        # to expunge (RFC 4314 "e"): a reader who may keep just their own \Seen closes without expunging.
        self._run(tag, lambda: mbox.expunge() if mbox.isWriteable() and mbox.may_write else None, done)

    select_CLOSE = (do_CLOSE,)

    def do_UNSELECT(self, tag: bytes) -> None:  # noqa: N802
        self._leave_mailbox()
        self.sendPositiveResponse(tag, b"UNSELECT completed")

    select_UNSELECT = (do_UNSELECT,)

    def do_CREATE(self, tag: bytes, name: bytes) -> None:  # noqa: N802
        try:
            mailbox = strict_name(name)
        except ValueError as error:
            self.sendNegativeResponse(tag, b"[CANNOT] " + str(error).encode("ascii"))
            return
        self._run(tag, lambda: self.account.create(mailbox),
                  lambda _: self.sendPositiveResponse(tag, b"CREATE completed"))

    auth_CREATE = (do_CREATE, IMAP4Server.arg_finalastring)
    select_CREATE = auth_CREATE

    def do_DELETE(self, tag: bytes, name: bytes) -> None:  # noqa: N802
        mailbox = canonical_name(_parseMbox(name))
        if mailbox == "INBOX":
            self.sendNegativeResponse(tag, b"[CANNOT] INBOX cannot be deleted")
            return
        if self.mbox is not None and self.mbox.collection.path == mailbox:
            self._leave_mailbox()
        self._run(tag, lambda: self.account.delete(mailbox),
                  lambda _: self.sendPositiveResponse(tag, b"DELETE completed"))

    auth_DELETE = (do_DELETE, IMAP4Server.arg_finalastring)
    select_DELETE = auth_DELETE

    def do_STATUS(self, tag: bytes, name: bytes, names: list[Any]) -> None:  # noqa: N802
        mailbox = _parseMbox(name)
        items = [n.decode("ascii", "replace").upper() for n in names if isinstance(n, bytes)]
        unknown = set(items) - {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"}
        if unknown or not items:
            self.sendBadResponse(tag, b"unknown STATUS item")
            return

        def done(status: dict[str, int] | None) -> None:
            if status is None:
                self.sendNegativeResponse(tag, b"[NONEXISTENT] no such mailbox")
                return
            values = " ".join(f"{key} {status[key]}" for key in items).encode()
            self.sendUntaggedResponse(b"STATUS " + collapseNestedLists([mailbox.encode("imap4-utf-7")]).strip()
                                      + b" (" + values + b")")
            self.sendPositiveResponse(tag, b"STATUS completed")

        self._run(tag, lambda: self.account.status(mailbox), done)

    auth_STATUS = (do_STATUS, IMAP4Server.arg_astring, IMAP4Server.arg_plist)
    select_STATUS = auth_STATUS

    def do_NAMESPACE(self, tag: bytes) -> None:  # noqa: N802
        """RFC 2342: personal, other users' and shared namespaces (Twisted's sends the shared one twice)."""
        account = self.account
        self.sendUntaggedResponse(b"NAMESPACE " + collapseNestedLists([
            account.getPersonalNamespaces(), account.getOtherUsersNamespaces(), account.getSharedNamespaces()]))
        self.sendPositiveResponse(tag, b"NAMESPACE completed")

    auth_NAMESPACE = (do_NAMESPACE,)
    select_NAMESPACE = auth_NAMESPACE
