"""SEARCH (RFC 3501 6.4.4): evaluate a parsed search key list against one message.

Twisted's own evaluator mixes bytes and str and fails on most string keys, so
the keys are evaluated here. String keys match case-insensitively as substrings
of the decoded (RFC 2047) header or of the body text. FROM, TO and SUBJECT are
answered from the index columns the Store fills at delivery, flags, sizes, dates,
UIDs and MODSEQ from the message row: only CC, BCC, HEADER, SENT* read headers,
and only BODY/TEXT read whole messages.
"""

from __future__ import annotations

import datetime as dt
import email.header
import email.utils
from typing import Any

from twisted.mail.imap4 import IllegalIdentifierError, parseIdList

from kantoor.imapd.message import StoredMessage


class SearchSyntaxError(ValueError):
    """The client's search keys are malformed (answered BAD)."""


_FLAG_KEYS = {
    b"ANSWERED": ("\\Answered", True), b"UNANSWERED": ("\\Answered", False),
    b"DELETED": ("\\Deleted", True), b"UNDELETED": ("\\Deleted", False),
    b"DRAFT": ("\\Draft", True), b"UNDRAFT": ("\\Draft", False),
    b"FLAGGED": ("\\Flagged", True), b"UNFLAGGED": ("\\Flagged", False),
    b"SEEN": ("\\Seen", True), b"UNSEEN": ("\\Seen", False), b"OLD": ("\\Recent", False),
}
# Headers decoded into index columns at delivery: answered from the message row, nothing is read.
_INDEXED_HEADERS = {b"FROM": "from_addr", b"TO": "to_addr", b"SUBJECT": "subject"}
_HEADER_KEYS = {b"CC": "cc", b"BCC": "bcc"}
HEADER_KEYS = frozenset({*_HEADER_KEYS, b"HEADER", b"SENTBEFORE", b"SENTON", b"SENTSINCE"})
BODY_KEYS = frozenset({b"BODY", b"TEXT"})


def needs(query: list[Any]) -> str | None:
    """What the keys need read from the Store: None, "headers" or "full"."""
    words: set[bytes] = set()

    def walk(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
            elif isinstance(item, bytes):
                words.add(item.upper())

    walk(query)
    if words & BODY_KEYS:
        return "full"
    return "headers" if words & HEADER_KEYS else None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").lower()


def _decoded_header(message: StoredMessage, name: str) -> str:
    raw = message.getHeaders(False, name).get(name.lower(), "")
    try:
        return str(email.header.make_header(email.header.decode_header(raw))).lower()
    except (ValueError, LookupError):
        return raw.lower()


def _date(value: bytes) -> dt.date:
    try:
        return dt.datetime.strptime(value.decode("ascii"), "%d-%b-%Y").date()
    except (ValueError, UnicodeDecodeError):
        raise SearchSyntaxError(f"bad date {value!r}") from None


def _sent_date(message: StoredMessage) -> dt.date | None:
    raw = message.getHeaders(False, "date").get("date")
    try:
        return email.utils.parsedate_to_datetime(raw).date() if raw else None
    except (TypeError, ValueError):
        return None


def _internal_date(message: StoredMessage) -> dt.date:
    when = message.item.internaldate or message.item.created_at
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.date()


class Searcher:
    def __init__(self, last_seq: int, last_uid: int) -> None:
        self.last_seq = last_seq
        self.last_uid = last_uid
        self.used_modseq = False  # a MODSEQ key makes the reply carry (MODSEQ n)

    def matches(self, query: list[Any], seq: int, message: StoredMessage) -> bool:
        """All keys must match (keys are ANDed)."""
        keys = list(query)
        result = True
        while keys:
            if not self._one(keys, seq, message):
                result = False  # keep consuming so syntax errors are still found
        return result

    def _pop(self, keys: list[Any]) -> Any:
        if not keys:
            raise SearchSyntaxError("missing search argument")
        return keys.pop(0)

    def _one(self, keys: list[Any], seq: int, message: StoredMessage) -> bool:
        key = self._pop(keys)
        if isinstance(key, list):
            return self.matches(key, seq, message)
        word = key.upper()
        if word[:1].isdigit() or word[:1] == b"*":
            return seq in self._set(key, self.last_seq)
        if word == b"ALL":
            return True
        if word in _FLAG_KEYS:
            flag, wanted = _FLAG_KEYS[word]
            return (flag in message.flags) == wanted
        if word in (b"NEW", b"RECENT"):
            return False  # \Recent is not tracked
        if word in (b"KEYWORD", b"UNKEYWORD"):
            keyword = self._pop(keys).decode("utf-8", "replace").lower()
            present = keyword in (f.lower() for f in message.flags)
            return present if word == b"KEYWORD" else not present
        if word in _INDEXED_HEADERS:
            return _text(self._pop(keys)) in str(getattr(message.item, _INDEXED_HEADERS[word]) or "").lower()
        if word in _HEADER_KEYS:
            return _text(self._pop(keys)) in _decoded_header(message, _HEADER_KEYS[word])
        if word == b"HEADER":
            name = self._pop(keys).decode("ascii", "replace")
            return _text(self._pop(keys)) in _decoded_header(message, name)
        if word in (b"BODY", b"TEXT"):
            needle = _text(self._pop(keys))
            part = message._loaded()
            haystack = part.body if word == b"BODY" else part.raw
            return needle in haystack.decode("utf-8", "replace").lower()
        if word in (b"LARGER", b"SMALLER"):
            try:
                size = int(self._pop(keys))
            except ValueError:
                raise SearchSyntaxError("size must be a number") from None
            return message.getSize() > size if word == b"LARGER" else message.getSize() < size
        if word in (b"BEFORE", b"ON", b"SINCE"):
            return self._compare(word, _internal_date(message), _date(self._pop(keys)))
        if word in (b"SENTBEFORE", b"SENTON", b"SENTSINCE"):
            limit = _date(self._pop(keys))
            sent = _sent_date(message)
            return sent is not None and self._compare(word[4:], sent, limit)
        if word == b"NOT":
            return not self._one(keys, seq, message)
        if word == b"OR":
            first = self._one(keys, seq, message)
            second = self._one(keys, seq, message)
            return first or second
        if word == b"UID":
            return message.uid in self._set(self._pop(keys), self.last_uid)
        if word == b"MODSEQ":
            return message.item.modseq >= self._modseq(keys)
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
    def _compare(word: bytes, value: dt.date, limit: dt.date) -> bool:
        if word == b"BEFORE":
            return value < limit
        if word == b"ON":
            return value == limit
        return value >= limit

    @staticmethod
    def _set(value: Any, last: int) -> Any:
        try:
            return parseIdList(value, last)
        except (IllegalIdentifierError, ValueError, TypeError):
            raise SearchSyntaxError("bad sequence set") from None
