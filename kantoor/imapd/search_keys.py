"""SEARCH keys (RFC 3501 6.4.4, RFC 7162 3.1.5) parsed into the Store's search criteria.

Everything is answered by the Store in SQL (:mod:`kantoor.storage.mail_search`).
What belongs to this session is resolved here first: sequence numbers become
UID sets (through the session's UID list) and \\Recent (RECENT, NEW, OLD) becomes
the set of UIDs this session holds as recent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from twisted.mail.imap4 import IllegalIdentifierError, MessageSet

from kantoor.imapd.sequence_sets import parse_sequence_set
from kantoor.storage import mail_search as q


class SearchSyntaxError(ValueError):
    """The client's search keys are malformed (answered BAD)."""


_FLAG_KEYS = {
    b"ANSWERED": ("\\Answered", True), b"UNANSWERED": ("\\Answered", False),
    b"DELETED": ("\\Deleted", True), b"UNDELETED": ("\\Deleted", False),
    b"DRAFT": ("\\Draft", True), b"UNDRAFT": ("\\Draft", False),
    b"FLAGGED": ("\\Flagged", True), b"UNFLAGGED": ("\\Flagged", False),
    b"SEEN": ("\\Seen", True), b"UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {b"FROM": "from", b"TO": "to", b"CC": "cc", b"BCC": "bcc", b"SUBJECT": "subject"}
_DATE_OPS = {b"BEFORE": "before", b"ON": "on", b"SINCE": "since"}


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        raise SearchSyntaxError("a search string is missing")
    return value.decode("utf-8", "replace")


def _date(value: Any) -> dt.date:
    try:
        return dt.datetime.strptime(value.decode("ascii"), "%d-%b-%Y").date()
    except (ValueError, UnicodeDecodeError, AttributeError):
        raise SearchSyntaxError(f"bad date {value!r}") from None


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    """Sorted numbers as inclusive ranges."""
    out: list[tuple[int, int]] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


class SearchParser:
    """Turns one SEARCH command's keys into a criterion; ``uids`` is the session's UID list (sequence order)."""

    def __init__(self, uids: list[int], recent: set[int]) -> None:
        self.uids = uids
        self.recent = recent
        self.used_modseq = False  # a MODSEQ key makes the reply carry (MODSEQ n)

    def parse(self, query: list[Any]) -> q.Criterion:
        keys = list(query)
        parts = []
        while keys:
            parts.append(self._one(keys))
        if not parts:
            raise SearchSyntaxError("missing search key")
        return parts[0] if len(parts) == 1 else q.And(parts)

    def _pop(self, keys: list[Any]) -> Any:
        if not keys:
            raise SearchSyntaxError("missing search argument")
        return keys.pop(0)

    def _one(self, keys: list[Any]) -> q.Criterion:
        key = self._pop(keys)
        if isinstance(key, list):
            return self.parse(key)
        word = key.upper()
        if word[:1].isdigit() or word[:1] == b"*":
            return self._sequence_set(key)
        if word == b"ALL":
            return q.All()
        if word in _FLAG_KEYS:
            return q.Flag(*_FLAG_KEYS[word])
        if word == b"RECENT":
            return q.Uids(_ranges(sorted(self.recent)))
        if word == b"OLD":
            return q.Not(q.Uids(_ranges(sorted(self.recent))))
        if word == b"NEW":  # RFC 3501: RECENT UNSEEN
            return q.And([q.Uids(_ranges(sorted(self.recent))), q.Flag("\\Seen", False)])
        if word in (b"KEYWORD", b"UNKEYWORD"):
            return q.Flag(_text(self._pop(keys)), word == b"KEYWORD")
        if word in _HEADER_KEYS:
            return q.Header(_HEADER_KEYS[word], _text(self._pop(keys)))
        if word == b"HEADER":
            name = _text(self._pop(keys)).strip().lower()
            return q.Header(name, _text(self._pop(keys)))
        if word in (b"BODY", b"TEXT"):
            return q.Text(_text(self._pop(keys)), headers_too=word == b"TEXT")
        if word in (b"LARGER", b"SMALLER"):
            try:
                size = int(self._pop(keys))
            except (ValueError, TypeError):
                raise SearchSyntaxError("size must be a number") from None
            return q.Size(word == b"LARGER", size)
        if word in _DATE_OPS:
            return q.Arrived(_DATE_OPS[word], _date(self._pop(keys)))
        if word[:4] == b"SENT" and word[4:] in _DATE_OPS:
            return q.Sent(_DATE_OPS[word[4:]], _date(self._pop(keys)))
        if word == b"NOT":
            return q.Not(self._one(keys))
        if word == b"OR":
            return q.Or(self._one(keys), self._one(keys))
        if word == b"UID":
            return self._uid_set(self._pop(keys))
        if word == b"MODSEQ":
            return q.ModseqAtLeast(self._modseq(keys))
        raise SearchSyntaxError(f"unknown search key {word.decode('ascii', 'replace')}")

    def _modseq(self, keys: list[Any]) -> int:
        """RFC 7162 3.1.5: ``MODSEQ [entry-name entry-type-req] mod-sequence-valzer``."""
        value = self._pop(keys)
        if not value.isdigit():  # a metadata entry name and type: every entry shares the message's modseq
            self._pop(keys)
            value = self._pop(keys)
        if not value.isdigit():
            raise SearchSyntaxError("MODSEQ needs a number")
        self.used_modseq = True
        return int(value)

    @staticmethod
    def _set(value: Any, last: int) -> MessageSet:
        try:
            return parse_sequence_set(value, last)
        except (IllegalIdentifierError, ValueError, TypeError, AttributeError):
            raise SearchSyntaxError("bad sequence set") from None

    def _sequence_set(self, value: Any) -> q.Criterion:
        """Sequence numbers → the UIDs they stand for now."""
        numbers = self._set(value, len(self.uids))
        ranges = []
        for low, high in numbers.ranges:
            low, high = max(low, 1), min(high, len(self.uids))
            if low <= high:
                ranges += _ranges(self.uids[low - 1:high]) if high - low < 4096 else \
                    [(self.uids[low - 1], self.uids[high - 1])]  # a long run: the UIDs in between are all ours
        return q.Uids(ranges)

    def _uid_set(self, value: Any) -> q.Criterion:
        numbers = self._set(value, self.uids[-1] if self.uids else 0)
        return q.Uids([(int(low), int(high)) for low, high in numbers.ranges])
