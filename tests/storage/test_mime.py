"""kantoor.storage.mime.parse_header_block: exactly what the standard library's header parser gives
(compat32 ``BytesHeaderParser``), on edge cases and on random header blocks."""

from __future__ import annotations

import random
from email.parser import BytesHeaderParser
from email.policy import compat32

import pytest

from kantoor.storage.mime import _PLAIN_BLOCK, MimePart, header_fields, parse_header_block, split_header

EDGES = [
    b"", b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"a", b":x\r\n", b" x\r\nA: b\r\n",
    b"From \r\n", b"From sender Mon Jan 1\r\nSubject: x\r\n\r\n", b"Subject: x\r\nFrom late\r\n",
    b"Subject: x\r\nFrom mid\r\nTo: y\r\n\r\n", b"Subject: a\r\n folded\r\n\tagain\r\n\r\nbody",
    b"Subject: a\rTo: b\nCc: c\r\n\r\n", b"Subject: no end", b"not a header\r\nSubject: x\r\n\r\n",
    b"Subject: x\r\nnot a header\r\n\r\n", b"X-8bit: caf\xc3\xa9 \xff\r\n\r\n", b"Subject: \x0bvt\x0c\x1c\r\n\r\n",
]
TOKENS = [b"From ", b"From:", b"Subject", b":", b" ", b"\t", b"\r", b"\n", b"\r\n", b"a", b"X-Y", b"\xc3\xa9", b"\xff",
          b"\x0b", b"\x0c", b"\x1c", b"=?utf-8?q?x?=", b"To: a@b", b"\r\n ", b"\n\t", b"\r\n\r\n", b"body", b"From x",
          b";", b"\x85"]


def _seen(msg) -> tuple:  # type: ignore[no-untyped-def]
    return (msg._headers, msg.get_unixfrom(), msg.get_payload(), [(type(d), str(d)) for d in msg.defects])


def _random_blocks(count: int) -> list[bytes]:
    rnd = random.Random(20261126)
    return [b"".join(rnd.choice(TOKENS) for _ in range(rnd.randint(1, 30))) for _ in range(count)]


@pytest.mark.parametrize("raw", EDGES)
def test_header_block_parsed_as_the_standard_library_does(raw: bytes) -> None:
    assert _seen(parse_header_block(raw)) == _seen(BytesHeaderParser(policy=compat32).parsebytes(raw))


def test_random_header_blocks_parsed_as_the_standard_library_does() -> None:
    for raw in _random_blocks(5000):
        assert _seen(parse_header_block(raw)) == _seen(BytesHeaderParser(policy=compat32).parsebytes(raw)), raw


def test_mime_part_headers_use_it() -> None:
    part = MimePart(b"Content-Type: text/plain; charset=utf-8\r\nSubject: s\r\n\r\nbody")
    assert part.headers.get_content_charset() == "utf-8" and part.headers["subject"] == "s"


def _fields(raw: bytes) -> list[tuple[str, str]]:
    return list(BytesHeaderParser(policy=compat32).parsebytes(raw).raw_items())


PLAIN_BLOCKS = [
    b"Subject: a\r\n\r\n", b"Subject: a\n\n", b"Subject:\r\n\r\n", b"Subject:   \r\n  folded\r\n\r\n",
    b"A: 1\r\n\tB\r\n \r\nC:x\r\n\r\n", b"X-8bit: caf\xc3\xa9 \xff\r\nTo: \x0bv\r\n\r\n", b"A:b:c\r\n\r\n",
    b"From: a@b\r\nfrom: c@d\r\n\r\n", b"Subject: x  \t\r\n\r\n",
]


@pytest.mark.parametrize("raw", EDGES + PLAIN_BLOCKS)
def test_header_fields_are_the_standard_librarys_raw_items(raw: bytes) -> None:
    assert header_fields(raw) == _fields(raw)


def test_header_fields_of_random_and_plain_blocks_are_the_standard_librarys() -> None:
    # Random blocks mostly take the careful path; blocks built of plain fields take the one-regex path.
    for raw in _random_blocks(5000):
        assert header_fields(raw) == _fields(raw), raw
    rnd = random.Random(7)
    names = [b"Subject: x", b"A:", b"A: \t", b"X-Y:  v  ", b"B: caf\xc3\xa9", b"C:=?x?="]
    continuations = [b"\tcont", b" ", b" c o n t "]
    plain = 0
    for _ in range(3000):
        eol = rnd.choice([b"\r\n", b"\n"])
        lines = [rnd.choice(names)] + [rnd.choice(names + continuations) for _ in range(rnd.randint(0, 8))]
        block = split_header(eol.join(lines) + eol + eol + rnd.choice([b"", b"body"]))[0]
        plain += bool(_PLAIN_BLOCK[eol.decode()][0].fullmatch(block.decode("ascii", "surrogateescape")))
        assert header_fields(block) == _fields(block), block
    assert plain == 3000  # all of them went through the one-regex path
