"""The rights vocabulary and its one mapping to every protocol's notation.

``freebusy < read < write`` are ordered; ``bind`` (add new items without seeing
any: the Drop folder) is implied by ``write``; ``admin`` (change grants) implies
everything.
"""

from __future__ import annotations

RIGHTS = ("freebusy", "read", "write", "bind", "admin")

# What holding a right lets you do (each right implies the ones listed).
IMPLIES: dict[str, frozenset[str]] = {
    "freebusy": frozenset({"freebusy"}),
    "read": frozenset({"freebusy", "read"}),
    "bind": frozenset({"bind"}),
    "write": frozenset({"freebusy", "read", "write", "bind"}),
    "admin": frozenset(RIGHTS),
}


def implied(rights: set[str] | frozenset[str]) -> frozenset[str]:
    out: set[str] = set()
    for right in rights:
        out |= IMPLIES[right]
    return frozenset(out)


# RFC 4314 IMAP ACL letters per right.
IMAP_LETTERS = {"read": "lrs", "write": "lrswipkxtecd", "bind": "i", "admin": "lrswipkxtecda", "freebusy": ""}

# Radicale rights letters: r/w on collections and items of the owner's tree.
RADICALE_LETTERS = {"read": "r", "write": "rw", "admin": "rw", "freebusy": "", "bind": ""}

# RFC 3744 privileges reported in DAV:current-user-privilege-set.
DAV_PRIVILEGES = {
    "freebusy": ("read-free-busy",),
    "read": ("read", "read-current-user-privilege-set", "read-free-busy"),
    "bind": ("bind",),
    "write": ("read", "write", "write-content", "write-properties", "bind", "unbind",
              "read-current-user-privilege-set", "read-free-busy"),
    "admin": ("all",),
}
