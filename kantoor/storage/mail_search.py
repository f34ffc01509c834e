"""SEARCH criteria (RFC 3501 6.4.4, RFC 7162 3.1.5) compiled to one SQL query.

The IMAP frontend parses the client's keys into these nodes (turning sequence
numbers and \\Recent into UID sets, since those belong to its session), and the
Store answers them in the database:

* flags and MODSEQ from the message's flag row (``message_flags``), or the reader's own flags in a shared mailbox;
* FROM/TO/CC/BCC/SUBJECT/HEADER from ``message_headers`` (decoded, lower-cased once
  after delivery: ``search_backlog``), BODY from ``message_texts`` (decoded text parts), TEXT from both —
  case-insensitive substring matches as ``LIKE`` over lower-cased text, so
  non-ASCII letters fold too (SQLite's own LIKE folds only ASCII);
* sizes, internal dates and the Date header's day from ``items`` (joined only when
  a key needs them), UIDs from the flag rows.

Nothing is evaluated in Python per message. What SQL cannot express is left out
by design and documented: body text beyond ``message_index.MAX_TEXT`` characters
per message is not searched, and text inside attachments is not either (both as
Dovecot without a full-text plugin does for attachments).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, exists, not_, or_, select, true
from sqlalchemy.sql import ColumnElement

from kantoor.storage.mail_flags import has_flag, modseq_expr
from kantoor.storage.message_index import fold
from kantoor.storage.models import Item, MessageFlags, MessageHeader, MessageText


class Criterion:
    """A search key; subclasses below."""


@dataclass
class All(Criterion):
    pass


@dataclass
class Flag(Criterion):
    name: str  # a system flag (\\Seen) or a keyword
    present: bool = True


@dataclass
class Header(Criterion):
    field: str  # lower-case header name
    needle: str  # "" matches every message that has the field


@dataclass
class Text(Criterion):
    needle: str
    headers_too: bool  # TEXT (header or body) rather than BODY


@dataclass
class Size(Criterion):
    larger: bool
    size: int


@dataclass
class Arrived(Criterion):
    """BEFORE/ON/SINCE on the internal date (as a UTC day)."""

    op: str  # before|on|since
    day: dt.date


@dataclass
class Sent(Criterion):
    """SENTBEFORE/SENTON/SENTSINCE on the Date header's own day."""

    op: str
    day: dt.date


@dataclass
class Uids(Criterion):
    ranges: list[tuple[int, int]]  # inclusive


@dataclass
class ModseqAtLeast(Criterion):
    modseq: int


@dataclass
class Not(Criterion):
    inner: Criterion


@dataclass
class Or(Criterion):
    left: Criterion
    right: Criterion


@dataclass
class And(Criterion):
    parts: list[Criterion]


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _compare(column, op: str, low, high) -> ColumnElement[bool]:  # type: ignore[no-untyped-def]
    """``column`` before ``low``, on [low, high), or since ``low``."""
    if op == "before":
        return column < low
    if op == "on":
        return and_(column >= low, column < high)
    return column >= low


def compile_criterion(node: Criterion, private: bool) -> ColumnElement[bool]:
    """The WHERE clause for ``node`` over ``message_flags [JOIN items] LEFT JOIN mail_user_flags``
    (``items`` is needed when :func:`uses_items` says so)."""
    if isinstance(node, All):
        return true()
    if isinstance(node, Flag):
        test = has_flag(private, node.name)
        return test if node.present else not_(test)
    if isinstance(node, Header):
        where = [MessageHeader.item_id == MessageFlags.item_id, MessageHeader.name == node.field.lower()]
        needle = fold(node.needle)
        if needle:
            where.append(MessageHeader.value.contains(needle, autoescape=True))
        return exists(select(MessageHeader.id).where(*where))
    if isinstance(node, Text):
        needle = fold(node.needle)
        body = exists(select(MessageText.item_id).where(
            MessageText.item_id == MessageFlags.item_id, MessageText.body.contains(needle, autoescape=True)))
        if not node.headers_too:
            return body
        header = exists(select(MessageHeader.id).where(
            MessageHeader.item_id == MessageFlags.item_id, MessageHeader.value.contains(needle, autoescape=True)))
        return or_(header, body)
    if isinstance(node, Size):
        return Item.size > node.size if node.larger else Item.size < node.size
    if isinstance(node, Arrived):
        low = _day_start(node.day)
        return _compare(Item.internaldate, node.op, low, low + dt.timedelta(days=1))
    if isinstance(node, Sent):
        return and_(Item.sent_date.is_not(None),
                    _compare(Item.sent_date, node.op, node.day, node.day + dt.timedelta(days=1)))
    if isinstance(node, Uids):
        if not node.ranges:
            return MessageFlags.uid < 0  # an empty set matches nothing
        uid = MessageFlags.uid
        return or_(*(uid == low if low == high else uid.between(low, high) for low, high in node.ranges))
    if isinstance(node, ModseqAtLeast):
        return modseq_expr(private) >= node.modseq
    if isinstance(node, Not):
        return not_(compile_criterion(node.inner, private))
    if isinstance(node, Or):
        return or_(compile_criterion(node.left, private), compile_criterion(node.right, private))
    if isinstance(node, And):
        return and_(true(), *(compile_criterion(p, private) for p in node.parts))
    raise TypeError(f"not a search criterion: {node!r}")


def uses_user_flags(node: Criterion) -> bool:
    """Whether the query needs the reader's own flags joined in."""
    if isinstance(node, (Flag, ModseqAtLeast)):
        return True
    if isinstance(node, Not):
        return uses_user_flags(node.inner)
    if isinstance(node, Or):
        return uses_user_flags(node.left) or uses_user_flags(node.right)
    if isinstance(node, And):
        return any(uses_user_flags(p) for p in node.parts)
    return False


def uses_items(node: Criterion) -> bool:
    """Whether the query needs the wide ``items`` row (size, dates); flags, UIDs, MODSEQ and text keys do not."""
    if isinstance(node, (Size, Arrived, Sent)):
        return True
    if isinstance(node, Not):
        return uses_items(node.inner)
    if isinstance(node, Or):
        return uses_items(node.left) or uses_items(node.right)
    if isinstance(node, And):
        return any(uses_items(p) for p in node.parts)
    return False
