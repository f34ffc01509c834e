"""Names and conventions shared by the Store's parts (layout of a new account, flag spelling)."""

from __future__ import annotations

from collections.abc import Iterable

# Which capacity a collection's bytes count against.
TOOL_OF_KIND = {"mailbox": "mail", "folder": "documents", "calendar": "calendar", "addressbook": "calendar"}

# Mailboxes every account gets, with their RFC 6154 special-use attribute.
DEFAULT_MAILBOXES = (
    ("INBOX", ""),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)
DROP_FOLDER = "Drop folder"


def normalize_address(address: str) -> str:
    return address.strip().lower()


SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}


def normalize_flags(flags: Iterable[str]) -> list[str]:
    """Deduplicated flags (case-insensitive), system flags spelled canonically."""
    seen: dict[str, str] = {}
    for flag in flags:
        key = flag.lower()
        if key == "\\recent":
            continue  # session state, never stored
        seen.setdefault(key, SYSTEM_FLAGS.get(key, flag))
    return list(seen.values())


def validate_item_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\x00" in name or len(name) > 1024:
        raise ValueError(f"invalid item name {name!r}")
