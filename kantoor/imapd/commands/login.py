"""LOGIN and AUTHENTICATE PLAIN (RFC 3501 6.2, RFC 4616, RFC 4959 SASL-IR), with the plan's feature gate."""

from __future__ import annotations

import binascii
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.mail.imap4 import IMAP4Server

from kantoor.imapd.account import MailAccount
from kantoor.imapd.worker_threads import in_thread


class LoginCommands:
    def do_LOGIN(self, tag: bytes, user: bytes, password: bytes) -> None:  # noqa: N802
        if not self._may_authenticate():
            self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] LOGIN is disabled before STARTTLS")
            return
        self._check_login(tag, user, password)

    unauth_LOGIN = (do_LOGIN, IMAP4Server.arg_astring, IMAP4Server.arg_finalastring)

    def do_AUTHENTICATE(self, tag: bytes, line: bytes | None) -> None:  # noqa: N802
        words = (line or b"").split()
        if not words or len(words) > 2:
            self.sendBadResponse(tag, b"AUTHENTICATE needs a mechanism")
            return
        if words[0].upper() != b"PLAIN":
            self.sendNegativeResponse(tag, b"[CANNOT] unsupported authentication mechanism")
            return
        if not self._may_authenticate():
            self.sendNegativeResponse(tag, b"[PRIVACYREQUIRED] authentication is disabled before STARTTLS")
            return
        if len(words) == 2:  # RFC 4959 SASL-IR
            self._finish_plain(words[1], tag)
            return
        d: Deferred = Deferred()
        self.parseState = "pending"
        self._pendingLiteral = d
        self.sendLine(b"+ ")
        d.addCallback(self._finish_plain, tag)

    unauth_AUTHENTICATE = (do_AUTHENTICATE, IMAP4Server.arg_line)

    def _finish_plain(self, response: bytes, tag: bytes) -> None:
        response = response.strip()
        if response == b"*":
            self.sendBadResponse(tag, b"AUTHENTICATE cancelled")
            return
        try:
            decoded = b"" if response == b"=" else binascii.a2b_base64(response, strict_mode=True)
            authzid, login, password = decoded.split(b"\x00")
        except (binascii.Error, ValueError):
            self.sendBadResponse(tag, b"malformed PLAIN response")
            return
        if authzid and authzid != login:
            self.sendNegativeResponse(tag, b"[AUTHORIZATIONFAILED] cannot log in as another user")
            return
        self._check_login(tag, login, password)

    def _check_login(self, tag: bytes, login: bytes, password: bytes) -> None:
        login_text = login.decode("utf-8", "replace")
        password_text = password.decode("utf-8", "replace")
        check = self.context.authenticator.check
        self._run(tag, lambda: in_thread(check, login_text, password_text, self._peer_host()),
                  lambda result: self._logged_in(result, tag))

    def _logged_in(self, result: Any, tag: bytes) -> Deferred | None:
        if not result.ok:
            # The delay is asynchronous: it holds this session, never the loop.
            reply = (b"[UNAVAILABLE] too many failed logins, try again later" if result.reason == "throttled"
                     else b"[AUTHENTICATIONFAILED] invalid login or password")
            return deferLater(self.context.reactor, self.context.settings.auth.failure_delay_seconds,
                              self.sendNegativeResponse, tag, reply)
        account = result.account
        if not self.context.quota.allows(account, "imap"):
            self.sendNegativeResponse(tag, b"[NOPERM] your plan does not include IMAP access")
            return None
        self.account = MailAccount(self.context.store, account)
        self.state = "auth"
        self.setTimeout(self.POSTAUTH_TIMEOUT)
        self.sendPositiveResponse(tag, b"[CAPABILITY " + b" ".join(self.listCapabilities()) + b"] logged in")
        return None
