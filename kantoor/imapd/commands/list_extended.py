"""LIST with selection and return options (RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE, RFC 5819 LIST-STATUS).

Thunderbird asks ``LIST (SPECIAL-USE) "" "*"`` once the server names SPECIAL-USE,
and many clients ``LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))`` to fill their
folder panes in one round trip. The plain ``LIST ref pattern`` form is the same
command without options. Every mailbox counts as subscribed (LSUB lists them all),
so SUBSCRIBED selects everything and adds ``\\Subscribed``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.mail.imap4 import IllegalClientResponse, IMAP4Server, _parseMbox, collapseNestedLists, parseNestedParens

from kantoor.imapd.account import ListEntry
from kantoor.imapd.worker_threads import in_thread
from kantoor.storage import NotFound, PermissionDenied

SELECTION = {b"SUBSCRIBED", b"REMOTE", b"RECURSIVEMATCH", b"SPECIAL-USE"}
SPECIAL = frozenset({"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"})
STATUS_ITEMS = {b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"HIGHESTMODSEQ"}


def _parens(line: bytes) -> tuple[list[Any], bytes]:
    """A parenthesised list at the start of ``line`` (nested lists and quoted strings allowed), and the rest."""
    depth, quoted, escaped = 0, False, False
    for index, char in enumerate(line):
        if quoted:
            if escaped:
                escaped = False
            elif char == 0x5C:
                escaped = True
            elif char == 0x22:
                quoted = False
        elif char == 0x22:
            quoted = True
        elif char == 0x28:
            depth += 1
        elif char == 0x29:
            depth -= 1
            if depth == 0:
                try:
                    parsed = parseNestedParens(line[: index + 1])
                except Exception:  # noqa: BLE001 - Twisted raises several kinds for bad nesting
                    raise IllegalClientResponse("malformed parenthesised list") from None
                return parsed[0], line[index + 1:].lstrip()
    raise IllegalClientResponse("unbalanced parentheses")


class ListOptions(list):  # type: ignore[type-arg]
    """The selection options (upper-case atoms)."""


class ListExtendedCommand:
    def opt_list_selection(self, line: bytes) -> tuple[ListOptions, bytes]:
        if not line.startswith(b"("):
            return ListOptions(), line
        options, rest = _parens(line)
        words = ListOptions(o.upper() for o in options if isinstance(o, bytes))
        if len(words) != len(options) or set(words) - SELECTION:
            raise IllegalClientResponse("unknown LIST selection option")
        return words, rest

    def arg_list_patterns(self, line: bytes) -> Any:
        """One mailbox pattern, or a parenthesised list of them (RFC 5258 3)."""
        line = line.lstrip()
        if line.startswith(b"("):
            patterns, rest = _parens(line)
            if not patterns or not all(isinstance(p, bytes) for p in patterns):
                raise IllegalClientResponse("bad LIST patterns")
            return patterns, rest
        result = self.arg_astring(line)
        if isinstance(result, Deferred):
            return result.addCallback(lambda found: ([found[0]], found[1]))
        return [result[0]], result[1]

    def opt_list_return(self, line: bytes) -> tuple[list[Any], bytes]:
        line = line.strip()
        if not line:
            return [], b""
        if not line[:6].upper() == b"RETURN":
            raise IllegalClientResponse("expected RETURN options")
        options, rest = _parens(line[6:].lstrip())
        return options, rest

    def do_LIST(self, tag: bytes, selection: ListOptions, reference: bytes, patterns: list[bytes],  # noqa: N802
                returns: list[Any], command: bytes = b"LIST") -> None:
        status_items: list[bytes] = []
        wanted: set[bytes] = set()
        items = list(returns)
        while items:
            option = items.pop(0)
            if not isinstance(option, bytes):
                self.sendBadResponse(tag, b"bad RETURN option")
                return
            option = option.upper()
            if option == b"STATUS" and items and isinstance(items[0], list):
                status_items = [s.upper() for s in items.pop(0) if isinstance(s, bytes)]
                if not status_items or set(status_items) - STATUS_ITEMS:
                    self.sendBadResponse(tag, b"bad STATUS items")
                    return
            elif option in (b"SUBSCRIBED", b"CHILDREN", b"SPECIAL-USE"):
                wanted.add(option)
            else:
                self.sendBadResponse(tag, b"unknown RETURN option")
                return
        if b"RECURSIVEMATCH" in selection and not {b"SUBSCRIBED"} & set(selection):
            self.sendBadResponse(tag, b"RECURSIVEMATCH needs another selection option")  # RFC 5258 3
            return
        ref = _parseMbox(reference)
        account = self.account

        def work() -> list[tuple[ListEntry, dict[str, int] | None]]:
            found: dict[str, ListEntry] = {}
            for pattern in patterns:
                for name, entry in self._list_blocking(ref, _parseMbox(pattern)):
                    found.setdefault(name, entry)
            rows = []
            for name in sorted(found, key=lambda n: (n.upper() != "INBOX", n)):
                entry = found[name]
                if b"SPECIAL-USE" in selection and not any(a in SPECIAL for a in entry.attributes):
                    continue
                status = None
                if status_items and "\\Noselect" not in entry.attributes:
                    try:
                        status = account.store.mailbox_status(account.find(name).id, account.principal_id)
                    except (NotFound, PermissionDenied):
                        status = None
                rows.append((entry, status))
            return rows

        subscribed = b"SUBSCRIBED" in selection or b"SUBSCRIBED" in wanted

        def done(rows: list[tuple[ListEntry, dict[str, int] | None]]) -> None:
            for entry, status in rows:
                attributes = [*entry.attributes, "\\Subscribed"] if subscribed and entry.name else entry.attributes
                encoded = collapseNestedLists([entry.name.encode("imap4-utf-7")]).strip()
                self.sendUntaggedResponse(command + b" (" + " ".join(attributes).encode() + b') "/" ' + encoded)
                if status is not None:  # RFC 5819: the STATUS right after its LIST line
                    values = b" ".join(b"%s %d" % (item, status[item.decode()]) for item in status_items)
                    self.sendUntaggedResponse(b"STATUS " + encoded + b" (" + values + b")")
            self.sendPositiveResponse(tag, command + b" completed")

        self._run(tag, lambda: in_thread(work), done)

    def _list_blocking(self, ref: str, pattern: str) -> list[tuple[str, ListEntry]]:
        return self.account.list_blocking(ref, pattern)

    auth_LIST = (do_LIST, opt_list_selection, IMAP4Server.arg_astring, arg_list_patterns, opt_list_return)
    select_LIST = auth_LIST

