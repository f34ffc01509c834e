"""Sequence sets (RFC 3501 9) parsed in one pass: the same MessageSet as Twisted's parser, errors where it errs."""

from __future__ import annotations

import random

import pytest
from twisted.mail.imap4 import IllegalClientResponse, IllegalIdentifierError, parseIdList

from kantoor.imapd.sequence_sets import arg_sequence_set, parse_sequence_set


@pytest.mark.parametrize("raw", [b"1", b"1:*", b"*", b"*:4", b"9:3", b"2,4,6:8,7,1", b"5:5,5", b"1:3,2:9,20,*"])
@pytest.mark.parametrize("last", [None, 25])
def test_same_ranges_as_twisted_rfc3501_9(raw: bytes, last: int | None) -> None:
    assert parse_sequence_set(raw, last).ranges == parseIdList(raw, last).ranges


def test_random_sets_agree_with_twisted() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        pieces = []
        for _ in range(rng.randint(1, 8)):
            low = rng.choice([b"*", str(rng.randint(1, 40)).encode()])
            pieces.append(low + b":" + rng.choice([b"*", str(rng.randint(1, 40)).encode()]) if rng.random() < 0.4
                          and low != b"*" else low)
        raw = b",".join(pieces)
        last = rng.choice([None, 30])
        assert parse_sequence_set(raw, last).ranges == parseIdList(raw, last).ranges, raw


def test_sets_of_single_numbers_agree_with_twisted() -> None:
    """A UID FETCH of many single UIDs (what syncing clients send) takes a shorter path: same ranges."""
    rng = random.Random(11)
    for _ in range(500):
        raw = b",".join(str(rng.randint(1, 60)).encode() for _ in range(rng.randint(2, 100)))
        assert parse_sequence_set(raw).ranges == parseIdList(raw).ranges, raw


@pytest.mark.parametrize("raw", [b"1,0", b"0,1", b"2,,3", b"4,"])
def test_single_number_sets_with_a_zero_or_a_gap_are_refused(raw: bytes) -> None:
    with pytest.raises(IllegalIdentifierError):
        parse_sequence_set(raw)


@pytest.mark.parametrize("raw", [b"0", b"1:0", b"*:*", b"", b"1,,2", b"a", b"+3", b"1_0", b"3:"])
def test_malformed_sets_are_refused(raw: bytes) -> None:
    with pytest.raises(IllegalIdentifierError):
        parse_sequence_set(raw)


def test_command_argument_parser_splits_the_rest_and_maps_errors() -> None:
    messages, rest = arg_sequence_set(None, b"1:3,7 (FLAGS)")
    assert messages.ranges == [(1, 3), (7, 7)] and rest == b"(FLAGS)"
    with pytest.raises(IllegalClientResponse):
        arg_sequence_set(None, b"0 (FLAGS)")
