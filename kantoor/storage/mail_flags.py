"""Whose flags a mailbox shows: the owner's on the message row, or each other reader's own.

In a mailbox someone else owns (a group mailbox, a folder shared with a group)
every user keeps their own system flags (``\\Seen \\Answered \\Flagged \\Deleted
\\Draft``) in :class:`~kantoor.storage.models.MailUserFlags`: one member reading a
message does not mark it read for the others. Keywords stay on the message's
flag row, shared by everyone, as in Dovecot's shared mailboxes. The owner of a
mailbox keeps using that row's own ``flags``.

A message's flags and modseq live in its narrow :class:`~kantoor.storage.models.MessageFlags`
row, not on the wide ``items`` row (migration 0006): mailbox views select from
``message_flags`` by (mailbox, UID) and join ``items`` only for what they need of it.
"""

from __future__ import annotations

from sqlalchemy import and_, case, func, literal
from sqlalchemy.sql import ColumnElement

from kantoor.storage.models import Collection, MailUserFlags, MessageFlags
from kantoor.storage.names import SYSTEM_FLAGS

# The flags of one message, as stored, at most this long: they are part of an index (PostgreSQL caps an
# index entry near 2.7 KB), and no client needs more keywords on one message.
MAX_FLAGS_TEXT = 2000


def check_flags_size(flags: list[str]) -> None:
    """ValueError (a NO [CANNOT] in IMAP) when a message would carry too many keywords to store."""
    if len(" ".join(flags)) > MAX_FLAGS_TEXT:
        raise ValueError("too many or too long flags on one message")


def is_private_view(coll: Collection, actor: int | None) -> bool:
    """Whether ``actor`` sees per-user system flags in ``coll`` (anyone but the owner and the system)."""
    return actor is not None and actor != coll.owner_id


def split_flags(flags: list[str]) -> tuple[list[str], list[str]]:
    """(system flags, keywords)."""
    system = [f for f in flags if f.lower() in SYSTEM_FLAGS]
    return system, [f for f in flags if f.lower() not in SYSTEM_FLAGS]


def view_flags(item_flags: str, user_flags: str | None, private: bool) -> list[str]:
    """The flags one user sees: the row's flags, or their own system flags plus the shared keywords."""
    shared = item_flags.split() if item_flags else []
    if not private:
        return shared
    own = user_flags.split() if user_flags else []
    return own + [f for f in shared if f.lower() not in SYSTEM_FLAGS]


def view_modseq(item_modseq: int, user_modseq: int | None) -> int:
    return max(int(item_modseq), int(user_modseq or 0))


def user_flags_join(actor: int | None) -> ColumnElement[bool]:
    """The ON clause of ``message_flags LEFT JOIN mail_user_flags`` for one reader."""
    return and_(MailUserFlags.item_id == MessageFlags.item_id, MailUserFlags.principal_id == (actor or 0))


def flag_text(private: bool, system: bool) -> ColumnElement[str]:
    """The SQL text a flag test looks in, padded with spaces and lower-cased (flags are case-insensitive)."""
    if private and system:
        column = func.coalesce(MailUserFlags.flags, "")
    else:
        column = MessageFlags.flags
    return func.lower(literal(" ") + column + literal(" "))


def has_flag(private: bool, flag: str) -> ColumnElement[bool]:
    system = flag.lower() in SYSTEM_FLAGS
    return flag_text(private, system).contains(f" {flag.lower()} ", autoescape=True)


def modseq_expr(private: bool) -> ColumnElement[int]:
    """A message's modseq in this reader's view (CONDSTORE, RFC 7162 3.1)."""
    if not private:
        return MessageFlags.modseq
    own = func.coalesce(MailUserFlags.modseq, 0)
    return case((own > MessageFlags.modseq, own), else_=MessageFlags.modseq)
