"""IMAP sequence sets (RFC 3501 9: ``sequence-set``) parsed into Twisted's MessageSet in one pass.

Twisted's ``parseIdList`` adds each comma-separated piece with ``MessageSet.add``,
which sorts and merges all ranges again every time: a ``UID FETCH`` naming 100
single UIDs (what a syncing client sends) costs 100 sorts on the reactor. Here the
pieces are collected first and merged once. Stricter than Twisted only where
RFC 3501 is: a number is digits, not anything ``int()`` takes (``+5``, ``1_0``).
"""

from __future__ import annotations

from twisted.mail.imap4 import IllegalClientResponse, IllegalIdentifierError, MessageSet


def _number(raw: bytes, last: int | None) -> int | None:
    """One ``seq-number``: a positive number, or ``*`` (``last``: None until the mailbox fills it in)."""
    if raw == b"*":
        return last
    if not raw.isdigit():
        raise IllegalIdentifierError(raw)
    value = int(raw)
    if value <= 0:  # RFC 3501 9: nz-number
        raise IllegalIdentifierError(raw)
    return value


def parse_sequence_set(raw: bytes, last: int | None = None) -> MessageSet:
    """A MessageSet equal to what ``parseIdList(raw, last)`` builds; IllegalIdentifierError if malformed."""
    pieces = raw.split(b",")
    if len(pieces) > 1 and raw.replace(b",", b"").isdigit() and all(pieces):
        # Only single numbers (a syncing client's UID FETCH of a hundred UIDs): sorted as ints and merged into
        # runs in one pass, without a (low, high) pair and a sort key per number.
        numbers = sorted(map(int, pieces))
        if numbers[0] <= 0:  # RFC 3501 9: nz-number
            raise IllegalIdentifierError(b"0")
        messages = MessageSet()
        messages.ranges = _runs(numbers)
        return messages
    ranges: list[tuple[int | None, int | None]] = []
    for piece in pieces:
        low_raw, colon, high_raw = piece.partition(b":")
        if colon and low_raw == high_raw == b"*":
            raise IllegalIdentifierError(piece)  # "*:*" makes no sense (as Twisted)
        low = _number(low_raw, last)
        high = _number(high_raw, last) if colon else low
        if low is None or (high is not None and high < low):
            low, high = high, low  # ranges are unordered; "*" (None) goes last, as MessageSet keeps it
        ranges.append((low, high))
    messages = MessageSet()
    messages.ranges = _merged(ranges)
    return messages


def _merged(ranges: list[tuple[int | None, int | None]]) -> list[tuple[int | None, int | None]]:
    """The ranges sorted, and overlapping or adjacent ones joined, "*" (None) sorting last: what
    ``MessageSet.clean`` makes of them, without its two passes swapping None for infinity and back."""
    if len(ranges) > 1:
        ranges.sort(key=_sort_key)
    merged: list[tuple[int | None, int | None]] = []
    for low, high in ranges:
        if merged:
            last_low, last_high = merged[-1]
            if last_high is None:  # "*" reaches every number after it
                continue
            if low is None or low > last_high + 1:
                merged.append((low, high))
            else:
                merged[-1] = (last_low, high if high is None or high > last_high else last_high)
            continue
        merged.append((low, high))
    return merged


def _runs(numbers: list[int]) -> list[tuple[int | None, int | None]]:
    """Sorted numbers as ranges, consecutive (or repeated) numbers joined: what :func:`_merged` makes of them."""
    runs: list[tuple[int | None, int | None]] = []
    low = high = numbers[0]
    for number in numbers:
        if number - high > 1:
            runs.append((low, high))
            low = number
        high = number  # sorted: never below ``high``
    runs.append((low, high))
    return runs


def _sort_key(pair: tuple[int | None, int | None]) -> tuple[float, float]:
    low, high = pair
    return (float("inf") if low is None else low, float("inf") if high is None else high)


def arg_sequence_set(self, line: bytes) -> tuple[MessageSet, bytes]:  # type: ignore[no-untyped-def]
    """Twisted's ``arg_seqset`` (a command-table argument parser), with :func:`parse_sequence_set`."""
    raw, _, rest = line.partition(b" ")
    try:
        return parse_sequence_set(raw), rest
    except IllegalIdentifierError as error:
        raise IllegalClientResponse("Bad message number " + str(error)) from None
