"""ACL (RFC 4314): MYRIGHTS, GETACL, LISTRIGHTS, SETACL, DELETEACL, mapped onto the one ACL engine.

The engine's rights are coarse (read, write, bind, admin); IMAP letters are
translated through :data:`kantoor.auth.rights.IMAP_LETTERS` both ways, so a
SETACL gets the smallest engine right that covers the letters asked for, and
GETACL shows the letters that right really gives. Identifiers are logins, and
``$name`` for groups.
"""

from __future__ import annotations

from twisted.mail.imap4 import IMAP4Server, _parseMbox, collapseNestedLists

from kantoor.auth.rights import IMAP_LETTERS
from kantoor.imapd.account import canonical_name
from kantoor.imapd.replies import Refused
from kantoor.imapd.worker_threads import in_thread

ORDER = "lrswipkxtecda"
# The rights LISTRIGHTS says are granted together (RFC 4314 3.7).
GROUPS = (b"lrs", b"i", b"wpkxtecd", b"a")


def letters_of(rights: frozenset[str] | set[str]) -> str:
    held = set("".join(IMAP_LETTERS.get(r, "") for r in rights))
    return "".join(c for c in ORDER if c in held)


def tied(letters: set[str]) -> set[str]:
    """Letters widened to whole LISTRIGHTS groups: naming one right of a group names the group."""
    out: set[str] = set()
    for group in GROUPS:
        if letters & set(group.decode()):
            out |= set(group.decode())
    return out


def right_for(letters: set[str]) -> str | None:
    """The engine right a set of RFC 4314 letters comes to (None: no right at all)."""
    for letter, right in (("a", "admin"), ("w", "write"), ("r", "read"), ("i", "bind")):
        if letter in letters:
            return right
    return None


def _quoted(text: str) -> bytes:
    return collapseNestedLists([text.encode("utf-8")]).strip()


class AclCommands:
    def _acl_mailbox(self, name: bytes) -> str:
        return canonical_name(_parseMbox(name))

    def do_MYRIGHTS(self, tag: bytes, name: bytes) -> None:  # noqa: N802
        mailbox, store, account = self._acl_mailbox(name), self.context.store, self.account

        def work() -> str:
            return letters_of(store.rights_held(account.find(mailbox).id, actor=account.principal_id))

        def done(letters: str) -> None:
            encoded = _quoted(mailbox) if mailbox != "INBOX" else b"INBOX"
            self.sendUntaggedResponse(b"MYRIGHTS " + encoded + b" " + (letters.encode() or b'""'))
            self.sendPositiveResponse(tag, b"MYRIGHTS completed")

        self._run(tag, lambda: in_thread(work), done)

    def do_GETACL(self, tag: bytes, name: bytes) -> None:  # noqa: N802
        mailbox, store, account = self._acl_mailbox(name), self.context.store, self.account

        def work() -> list[tuple[str, str]]:
            return store.mailbox_grants(account.find(mailbox).id, account.principal_id)

        def done(entries: list[tuple[str, str]]) -> None:
            words = [b"ACL", _quoted(mailbox)]
            for identifier, right in entries:
                words += [_quoted(identifier), letters_of({right}).encode()]
            self.sendUntaggedResponse(b" ".join(words))
            self.sendPositiveResponse(tag, b"GETACL completed")

        self._run(tag, lambda: in_thread(work), done)

    def do_LISTRIGHTS(self, tag: bytes, name: bytes, identifier: bytes) -> None:  # noqa: N802
        mailbox = self._acl_mailbox(name)
        self.sendUntaggedResponse(b" ".join([b"LISTRIGHTS", _quoted(mailbox), _quoted(identifier.decode(
            "utf-8", "replace")), b'""', *GROUPS]))
        self.sendPositiveResponse(tag, b"LISTRIGHTS completed")

    def _change_acl(self, tag: bytes, name: bytes, identifier: bytes, rights: bytes | None) -> None:
        mailbox, store, account = self._acl_mailbox(name), self.context.store, self.account
        who = identifier.decode("utf-8", "replace")
        text = (rights or b"").decode("ascii", "replace")
        mode, letters = (text[0], set(text[1:])) if text[:1] in ("+", "-") else ("=", set(text))
        if letters - set(ORDER + "0123456789"):
            self.sendBadResponse(tag, b"unknown rights letters")
            return

        def work() -> None:
            coll = account.find(mailbox)
            if who.startswith("$"):
                group = store.get_group(who[1:])
                grantee = group.principal_id if group is not None else None
            else:
                found = store.get_account(who)
                grantee = found.principal_id if found is not None else None
            if grantee is None:
                raise Refused("NONEXISTENT", "no such identifier")
            if grantee == coll.owner_id:
                raise Refused("CANNOT", "the owner's rights cannot be changed")
            current = dict(store.mailbox_grants(coll.id, account.principal_id)[1:]).get(who)
            held = set(letters_of({current})) if current else set()
            asked = tied(letters)
            wanted = held | asked if mode == "+" else held - asked if mode == "-" else asked
            right = right_for(wanted) if rights is not None else None
            if right is None:
                if current is not None:
                    store.revoke(coll.id, None, grantee, actor=account.principal_id)
            else:
                store.grant(coll.id, None, grantee, right, actor=account.principal_id)

        command = b"SETACL" if rights is not None else b"DELETEACL"
        self._run(tag, lambda: in_thread(work), lambda _: self.sendPositiveResponse(tag, command + b" completed"))

    def do_SETACL(self, tag: bytes, name: bytes, identifier: bytes, rights: bytes) -> None:  # noqa: N802
        self._change_acl(tag, name, identifier, rights)

    def do_DELETEACL(self, tag: bytes, name: bytes, identifier: bytes) -> None:  # noqa: N802
        self._change_acl(tag, name, identifier, None)

    auth_MYRIGHTS = (do_MYRIGHTS, IMAP4Server.arg_finalastring)
    select_MYRIGHTS = auth_MYRIGHTS
    auth_GETACL = (do_GETACL, IMAP4Server.arg_finalastring)
    select_GETACL = auth_GETACL
    auth_LISTRIGHTS = (do_LISTRIGHTS, IMAP4Server.arg_astring, IMAP4Server.arg_finalastring)
    select_LISTRIGHTS = auth_LISTRIGHTS
    auth_SETACL = (do_SETACL, IMAP4Server.arg_astring, IMAP4Server.arg_astring, IMAP4Server.arg_finalastring)
    select_SETACL = auth_SETACL
    auth_DELETEACL = (do_DELETEACL, IMAP4Server.arg_astring, IMAP4Server.arg_finalastring)
    select_DELETEACL = auth_DELETEACL
