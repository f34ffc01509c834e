"""QUOTA (RFC 9208): one quota root "" per account, resource STORAGE in KiB, from the quota engine.

The plan fixes the limits, so SETQUOTA is refused.
"""

from __future__ import annotations

from twisted.internet.threads import deferToThread
from twisted.mail.imap4 import IMAP4Server, _parseMbox, collapseNestedLists

from kantoor.imapd.account import canonical_name

ROOT = b'""'


class QuotaCommands:
    def _quota_line(self) -> bytes:
        """Blocking: ``QUOTA "" (STORAGE used limit)`` in KiB (RFC 9208 5.1, rounded up)."""
        used, capacity = self.context.quota.report(self.context.store, self.account.account)["mail"]
        return b'QUOTA %s (STORAGE %d %d)' % (ROOT, (used + 1023) // 1024, capacity // 1024)

    def do_GETQUOTA(self, tag: bytes, root: bytes) -> None:  # noqa: N802
        if root != b"":
            self.sendNegativeResponse(tag, b"[NONEXISTENT] no such quota root")
            return

        def done(line: bytes) -> None:
            self.sendUntaggedResponse(line)
            self.sendPositiveResponse(tag, b"GETQUOTA completed")

        self._run(tag, lambda: deferToThread(self._quota_line), done)

    auth_GETQUOTA = (do_GETQUOTA, IMAP4Server.arg_finalastring)
    select_GETQUOTA = auth_GETQUOTA

    def do_GETQUOTAROOT(self, tag: bytes, name: bytes) -> None:  # noqa: N802
        mailbox = canonical_name(_parseMbox(name))
        account = self.account

        def work() -> bytes:
            account.find(mailbox)  # NotFound → NO [NONEXISTENT]
            return self._quota_line()

        def done(line: bytes) -> None:
            encoded = collapseNestedLists([mailbox.encode("imap4-utf-7")]).strip()
            self.sendUntaggedResponse(b"QUOTAROOT " + encoded + b" " + ROOT)
            self.sendUntaggedResponse(line)
            self.sendPositiveResponse(tag, b"GETQUOTAROOT completed")

        self._run(tag, lambda: deferToThread(work), done)

    auth_GETQUOTAROOT = (do_GETQUOTAROOT, IMAP4Server.arg_finalastring)
    select_GETQUOTAROOT = auth_GETQUOTAROOT

    def do_SETQUOTA(self, tag: bytes, line: bytes) -> None:  # noqa: N802
        self.sendNegativeResponse(tag, b"[NOPERM] quotas come from your subscription plan")

    auth_SETQUOTA = (do_SETQUOTA, IMAP4Server.arg_line)
    select_SETQUOTA = auth_SETQUOTA
