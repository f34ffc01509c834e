"""Kantoor's IMAP4rev1 server: Twisted's IMAP4Server parser, our login policy and Store-backed commands.

Twisted parses the wire protocol and formats FETCH data; this subclass decides
who may log in, runs every blocking step (password check, SQL, blob reads) in a
worker thread, maps Store errors to RFC 5530 response codes and holds later
pipelined commands while one is in flight, so they run in order.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import interfaces
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.mail.imap4 import IMAP4Server
from twisted.python.failure import Failure

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.imapd.commands.acl import AclCommands
from kantoor.imapd.commands.append import AppendCommand
from kantoor.imapd.commands.copy import CopyCommand
from kantoor.imapd.commands.enable import EnableCommand, uid_set
from kantoor.imapd.commands.expunge import ExpungeCommand
from kantoor.imapd.commands.fetch import FetchCommand
from kantoor.imapd.commands.list_extended import ListExtendedCommand
from kantoor.imapd.commands.login import LoginCommands
from kantoor.imapd.commands.mailboxes import MailboxCommands
from kantoor.imapd.commands.move import MoveCommand
from kantoor.imapd.commands.qresync import QresyncCommand
from kantoor.imapd.commands.quota import QuotaCommands
from kantoor.imapd.commands.rename import RenameCommand
from kantoor.imapd.commands.search import SearchCommand
from kantoor.imapd.commands.store import StoreCommand
from kantoor.imapd.commands.uid import UidCommand
from kantoor.imapd.literals import NonSyncLiterals
from kantoor.imapd.mailbox import Changes, SelectedMailbox
from kantoor.imapd.replies import Refused, refusal
from kantoor.imapd.sequence_sets import arg_sequence_set
from kantoor.quota import QuotaEngine
from kantoor.storage import Store
from kantoor.storage.notify import ChangeEvent

log = logging.getLogger(__name__)

# Bytes offered to the socket per send() (Twisted's default is 128 KiB).
SEND_LIMIT = 1024 * 1024

# Before login a silent client is dropped sooner than the configured idle timeout.
PREAUTH_TIMEOUT = 120

# tag = 1*<any ASTRING-CHAR except "+">: printable ASCII without specials.
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')


@dataclass
class ServerContext:
    """What every connection needs; shared by the sessions of one listener."""

    reactor: Any
    settings: Settings
    store: Store
    authenticator: Authenticator
    quota: QuotaEngine
    tls_context: Any  # a Twisted IOpenSSLContextFactory
    implicit_tls: bool


class KantoorIMAPServer(NonSyncLiterals, LoginCommands, ListExtendedCommand, MailboxCommands, RenameCommand,
                        AppendCommand, StoreCommand, ExpungeCommand, CopyCommand, MoveCommand, FetchCommand,
                        SearchCommand, UidCommand, EnableCommand, QuotaCommands, AclCommands, QresyncCommand,
                        IMAP4Server):
    IDENT = b"Kantoor IMAP4rev1 ready"
    arg_seqset = arg_sequence_set  # sets merged once, not once per comma (Twisted's parseIdList)

    def __init__(self, context: ServerContext) -> None:
        super().__init__(chal={}, contextFactory=context.tls_context)
        self.context = context
        idle = context.settings.limits.imap_idle_timeout_seconds
        self.timeOut = min(PREAUTH_TIMEOUT, idle)
        self.POSTAUTH_TIMEOUT = idle
        self._stop_watching: Callable[[], None] | None = None

    # ------------------------------------------------------------------ connection state
    def _peer_host(self) -> str:
        peer = self.transport.getPeer()
        return getattr(peer, "host", "")

    def _is_loopback(self) -> bool:
        try:
            address = ipaddress.ip_address(self._peer_host())
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        return address.is_loopback or bool(mapped and mapped.is_loopback)

    def _is_secure(self) -> bool:
        return (self.context.implicit_tls or self.startedTLS
                or interfaces.ISSLTransport(self.transport, None) is not None)

    def _may_authenticate(self) -> bool:
        """RFC 3501 6.2 / RFC 8314: no cleartext passwords, except on loopback when configured."""
        return self._is_secure() or (self._is_loopback()
                                     and self.context.settings.auth.allow_plaintext_on_loopback)

    def capabilities(self) -> dict[bytes, Any]:
        caps: dict[bytes, Any] = {}
        if not self._is_secure() and self.ctx and self.canStartTLS:
            caps[b"STARTTLS"] = None
        if self.state == "unauth":
            if self._may_authenticate():
                caps[b"AUTH"] = [b"PLAIN"]
                caps[b"SASL-IR"] = None
            else:
                caps[b"LOGINDISABLED"] = None
        for name in (b"LITERAL+", b"IDLE", b"NAMESPACE", b"ID", b"UNSELECT", b"CHILDREN", b"SPECIAL-USE",
                     b"UIDPLUS", b"MOVE", b"ENABLE", b"CONDSTORE", b"QRESYNC", b"QUOTA", b"QUOTA=RES-STORAGE", b"ACL",
                     b"RIGHTS=texk", b"LIST-EXTENDED", b"LIST-STATUS"):
            caps[name] = None
        return caps

    def connectionMade(self) -> None:  # noqa: N802
        # Replies are small and each one ends a round trip (a "+" continuation, a tagged OK): with Nagle's
        # algorithm on, a reply written in two pieces waits for the client's delayed ACK (40 ms on Linux).
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass
        if hasattr(self.transport, "SEND_LIMIT"):
            # Twisted offers a TCP socket at most 128 KiB per send(): a FETCH of a hundred bodies took twenty
            # reactor turns (and wake-ups) to leave. The kernel still takes only what fits in its buffer.
            self.transport.SEND_LIMIT = SEND_LIMIT
        super().connectionMade()

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self._leave_mailbox()
        super().connectionLost(reason)

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802
        self.sendLine(b"* BYE line too long")
        self.transport.loseConnection()

    def parse_command(self, line: bytes) -> None:
        tag = line.split(None, 1)[0] if line.strip() else b""
        if tag and not _TAG.fullmatch(tag):
            # Without a valid tag the client could not match a tagged reply (RFC 3501 9: tag).
            self.sendBadResponse(None, b"invalid tag")
            return
        super().parse_command(line)

    def dispatchCommand(self, tag: bytes, cmd: bytes, rest: bytes | None, uid: int | None = None) -> None:  # noqa: N802
        # A command with its arguments missing reaches the parsers as b"" (→ BAD "Missing argument"),
        # not as None (which Twisted's parsers crash on).
        super().dispatchCommand(tag, cmd, rest if rest is not None else b"", uid)

    def lookupCommand(self, cmd: bytes) -> Any:  # noqa: N802
        try:
            cmd.decode("ascii")
        except UnicodeDecodeError:
            return None  # answered "BAD Unsupported command"
        return super().lookupCommand(cmd)

    # ------------------------------------------------------------------ running blocking work
    def _hold(self) -> None:
        """Queue pipelined commands until the current one has answered (see IMAP4Server.blocked)."""
        if self.blocked is None:
            self.blocked = []

    def _release(self, result: object = None) -> None:
        self._unblock()

    def _refuse(self, failure: Failure, tag: bytes) -> None:
        reply = refusal(failure)
        if reply is not None:
            self.sendNegativeResponse(tag, reply.line())
        else:
            log.error("IMAP command failed: %s", failure.getTraceback())
            self.sendNegativeResponse(tag, b"[SERVERBUG] internal server error")

    def _run(self, tag: bytes, start: Callable[[], Deferred], done: Callable[[Any], Any]) -> None:
        """Start async work, answer with ``done`` or a mapped refusal; later commands wait."""
        self._hold()
        d = maybeDeferred(start)
        d.addCallback(done)
        d.addErrback(self._refuse, tag)
        d.addBoth(self._release)

    def _IMAP4Server__ebDispatch(self, failure: Failure, tag: bytes) -> None:  # noqa: N802
        # Argument parsing refusals (e.g. an APPEND literal over the size limit) answer NO [CODE].
        if failure.check(Refused):
            self.sendNegativeResponse(tag, failure.value.line())
            return
        IMAP4Server._IMAP4Server__ebDispatch(self, failure, tag)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ STARTTLS
    def do_STARTTLS(self, tag: bytes) -> None:  # noqa: N802
        if self._is_secure():
            self.sendBadResponse(tag, b"TLS is already active")
        elif not (self.ctx and self.canStartTLS):
            self.sendNegativeResponse(tag, b"TLS not available")
        else:
            # Plaintext pipelined behind STARTTLS must not run as if it came over TLS.
            self.clearLineBuffer()
            self.sendPositiveResponse(tag, b"Begin TLS negotiation now")
            self.transport.startTLS(self.ctx)
            self.startedTLS = True

    unauth_STARTTLS = (do_STARTTLS,)


    # ------------------------------------------------------------------ ID (RFC 2971)
    def do_ID(self, tag: bytes, line: bytes) -> None:  # noqa: N802
        self.sendUntaggedResponse(b'ID ("name" "Kantoor")')
        self.sendPositiveResponse(tag, b"ID completed")

    unauth_ID = (do_ID, IMAP4Server.arg_line)
    auth_ID = unauth_ID
    select_ID = unauth_ID


    # ------------------------------------------------------------------ change notifications, NOOP, IDLE
    def _watch(self, mbox: SelectedMailbox) -> None:
        reactor = self.context.reactor

        def listener(event: ChangeEvent) -> None:
            # Called from the writer's thread: hop onto the reactor.
            if event.collection_id == mbox.id:
                reactor.callFromThread(self._mailbox_changed, mbox)

        self._stop_watching = self.context.store.notifier.subscribe(listener)

    _refreshing = False
    _refresh_again = False

    def _mailbox_changed(self, mbox: SelectedMailbox) -> None:
        """Tell an IDLE client about changes; a burst of events (a MOVE of many messages) costs one refresh."""
        if self.parseState != "idle" or self.mbox is not mbox:
            return
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        self._hold()  # a DONE and what follows wait until the view is consistent again

        def finished(_: object) -> None:
            self._refreshing = False
            self._release()
            if self._refresh_again:
                self._refresh_again = False
                self._mailbox_changed(mbox)

        mbox.refresh().addCallback(self._send_changes).addErrback(self._log_failure).addBoth(finished)

    def _log_failure(self, failure: Failure) -> None:
        log.error("IMAP background refresh failed: %s", failure.getTraceback())

    def _report_expunged(self, pairs: list[tuple[int, int]]) -> None:
        """EXPUNGE per message (highest sequence number first), or one VANISHED once QRESYNC is on (RFC 7162 3.2.10)."""
        if not pairs:
            return
        if self.qresync:
            self.sendUntaggedResponse(b"VANISHED " + uid_set(uid for _, uid in pairs))
            return
        for seq, _ in sorted(pairs, reverse=True):
            self.sendUntaggedResponse(b"%d EXPUNGE" % seq)

    def _send_changes(self, changes: Changes) -> None:
        self._report_expunged(list(zip(changes.expunged, changes.vanished, strict=True)))
        if changes.exists is not None:
            self.sendUntaggedResponse(b"%d EXISTS" % changes.exists)
        if changes.recent is not None:
            self.sendUntaggedResponse(b"%d RECENT" % changes.recent)
        for seq, flags in changes.flags.items():
            # RFC 7162 3.2: once CONDSTORE is on, unsolicited FETCH responses carry MODSEQ.
            modseq = b" MODSEQ (%d)" % changes.modseqs[seq] if self.condstore and seq in changes.modseqs else b""
            self.sendUntaggedResponse(b"%d FETCH (FLAGS (%s)%s)" % (seq, " ".join(flags).encode(), modseq))

    def do_NOOP(self, tag: bytes) -> None:  # noqa: N802
        if self.mbox is None:
            self.sendPositiveResponse(tag, b"NOOP completed")
            return

        def done(changes: Changes) -> None:
            self._send_changes(changes)
            self.sendPositiveResponse(tag, b"NOOP completed")

        self._run(tag, self.mbox.refresh, done)

    unauth_NOOP = (do_NOOP,)
    auth_NOOP = unauth_NOOP
    select_NOOP = unauth_NOOP
    select_CHECK = unauth_NOOP  # CHECK (RFC 3501 6.4.1) has nothing to flush here: it acts like NOOP





