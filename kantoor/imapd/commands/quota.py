"""QUOTA (RFC 9208): resource STORAGE in KiB from the quota engine, one quota root per owner.

The account's own mailboxes share the root ``""``; each group mailbox the user
can reach shares the group's root ``Shared/<group>`` (a group's mail counts
against the group's capacity, which comes from its administrator's plan).
Folders other accounts shared have no root the user may look at (RFC 9208 4.3
allows a mailbox without one). The plan fixes the limits, so SETQUOTA is refused.
"""

from __future__ import annotations

from twisted.mail.imap4 import IMAP4Server, _parseMbox, collapseNestedLists

from kantoor.imapd.account import DELIMITER, SHARED, canonical_name
from kantoor.imapd.replies import Refused
from kantoor.imapd.worker_threads import in_thread
from kantoor.storage import NotFound


def _quoted(name: str) -> bytes:
    return collapseNestedLists([name.encode("imap4-utf-7")]).strip()


class QuotaCommands:
    def _quota_root_owner(self, root: str) -> int:
        """Blocking: the principal whose usage a quota root names (Refused NONEXISTENT if none the user may see)."""
        if root == "":
            return self.account.principal_id
        head, _, group_name = root.partition(DELIMITER)
        if head == SHARED and group_name and DELIMITER not in group_name:
            try:
                owner, _ = self.account.locate(root)
                self.account.find(root)  # a member: may read the group's mailbox
                return owner
            except NotFound:
                pass
        raise Refused("NONEXISTENT", "no such quota root")

    def _quota_line(self, root: str, owner: int) -> bytes:
        """Blocking: ``QUOTA root (STORAGE used limit)`` in KiB (RFC 9208 5.1, rounded up)."""
        store = self.context.store
        used = store.usage(owner).get("mail", 0)
        capacity = self.context.quota.plan(store.plan_holder(owner).plan).capacity("mail")
        return b"QUOTA %s (STORAGE %d %d)" % (_quoted(root), (used + 1023) // 1024, capacity // 1024)

    def do_GETQUOTA(self, tag: bytes, root: bytes) -> None:  # noqa: N802
        name = _parseMbox(root) if root else ""

        def work() -> bytes:
            return self._quota_line(name, self._quota_root_owner(name))

        def done(line: bytes) -> None:
            self.sendUntaggedResponse(line)
            self.sendPositiveResponse(tag, b"GETQUOTA completed")

        self._run(tag, lambda: in_thread(work), done)

    auth_GETQUOTA = (do_GETQUOTA, IMAP4Server.arg_finalastring)
    select_GETQUOTA = auth_GETQUOTA

    def do_GETQUOTAROOT(self, tag: bytes, name: bytes) -> None:  # noqa: N802
        mailbox = canonical_name(_parseMbox(name))
        account = self.account

        def work() -> tuple[str | None, bytes]:
            coll = account.find(mailbox)  # NotFound → NO [NONEXISTENT]
            if coll.owner_id == account.principal_id:
                return "", self._quota_line("", coll.owner_id)
            head, _, rest = mailbox.partition(DELIMITER)
            if head == SHARED:
                root = f"{SHARED}{DELIMITER}{rest.partition(DELIMITER)[0]}"
                return root, self._quota_line(root, coll.owner_id)
            return None, b""

        def done(found: tuple[str | None, bytes]) -> None:
            root, line = found
            roots = b"" if root is None else b" " + _quoted(root)
            self.sendUntaggedResponse(b"QUOTAROOT " + _quoted(mailbox) + roots)
            if line:
                self.sendUntaggedResponse(line)
            self.sendPositiveResponse(tag, b"GETQUOTAROOT completed")

        self._run(tag, lambda: in_thread(work), done)

    auth_GETQUOTAROOT = (do_GETQUOTAROOT, IMAP4Server.arg_finalastring)
    select_GETQUOTAROOT = auth_GETQUOTAROOT

    def do_SETQUOTA(self, tag: bytes, line: bytes) -> None:  # noqa: N802
        self.sendNegativeResponse(tag, b"[NOPERM] quotas come from your subscription plan")

    auth_SETQUOTA = (do_SETQUOTA, IMAP4Server.arg_line)
    select_SETQUOTA = auth_SETQUOTA
