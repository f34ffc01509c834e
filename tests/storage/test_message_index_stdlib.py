"""The message index's own readings of MIME headers give what the standard library gives: compat32
``Message.get_content_type``/``get_params``/``get_boundary``/``get_content_charset``/``get_content_disposition``
(RFC 2045 5.1, RFC 2046 5.1.1, RFC 2183, RFC 2231) on random header values, and SEARCH's folding (RFC 3501
6.4.4: case-insensitive, whitespace runs as one space) as ``str.lower`` and a regex give it."""

from __future__ import annotations

import email.message
import email.utils
import random
import re
from email.message import Message
from email.policy import compat32

import pytest

from kantoor.storage import message_index
from kantoor.storage.message_index import fold


def _reference_fold(text: str) -> str:
    return re.sub("  +", " ", text.replace("\r", " ").replace("\n", " ").replace("\t", " ")).lower()


def test_every_latin1_character_lower_cases_to_one_latin1_character() -> None:
    # What the byte-table fold relies on.
    for code in range(256):
        assert len(chr(code).lower()) == 1 and ord(chr(code).lower()) < 256
    assert fold("".join(map(chr, range(256)))) == _reference_fold("".join(map(chr, range(256))))


ALPHABETS = ["aB \r\n\t", "ÀÉß µÿ×÷Ö \r\n\t.\x0b\x85\xa0", "ΣΟΦΟΣ İ ẞ 会議 é\r\n\t", "a\udcff \r\n"]


@pytest.mark.parametrize("alphabet", ALPHABETS, ids=["ascii", "latin-1", "beyond-latin-1", "surrogates"])
def test_fold_is_lower_case_with_whitespace_runs_as_one_space(alphabet: str) -> None:
    rnd = random.Random(ALPHABETS.index(alphabet))
    for _ in range(2000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        assert fold(text) == _reference_fold(text), repr(text)


TYPES = ["text/plain", "TEXT/HTML", "multipart/mixed", "Multipart/Alternative", "message/rfc822", "text", "a/b/c",
         "", " ", "application/pdf", "text/pl\ufffdin", "/"]
PARAMS = ["charset=utf-8", 'charset="ISO-8859-1"', "charset=bogus", "charset*=utf-8''utf-8", "charset*=bogus''%FF",
          "charset=caf\ufffd", "boundary=b1", 'boundary="b 2 "', "boundary*0=a; boundary*1=b", "boundary*=utf-8''%41",
          'boundary=""', "BOUNDARY=Up", "name=\"a;b\"", 'q="a\\"b"', "x", "=", "a==b", "name*0*=utf-8''%C3%A9",
          "name*1=z", "filename=<angle>", "size=3", "", " ", 'charset="\\"x"', "CHARSET=UTF-8"]


def _random_values(count: int) -> list[str]:
    rnd = random.Random(20261126)
    values = []
    for _ in range(count):
        params = [rnd.choice(PARAMS) for _ in range(rnd.randint(0, 4))]
        values.append(rnd.choice(TYPES) + "".join(rnd.choice([";", "; ", " ;", ";\r\n\t"]) + p for p in params))
    return values


def _outcome(function):  # type: ignore[no-untyped-def]
    try:
        return function()
    except Exception as error:  # noqa: BLE001  (the stdlib raising must be matched, not hidden)
        return type(error)


def test_content_type_parameters_are_compat32s_rfc2045_rfc2231() -> None:
    for value in _random_values(4000):
        # As parsed from a message, a raw 8-bit byte is a surrogate; compat32 reads it as U+FFFD.
        raw = value.replace("\ufffd", "\udcff")
        msg = Message(policy=compat32)
        msg["Content-Type"] = raw
        expected = _outcome(msg.get_params)
        if expected is TypeError:
            # A parameter both split (name*0=) and whole (name*=): the standard library gives up; the index takes
            # the parameters as they stand (a message that cannot be indexed could not be delivered).
            # What get_params has before it decodes (email.message._get_params_preserve's split), unquoted.
            pieces = [p.partition("=") for p in email.message._parseparam(str(msg["Content-Type"]))]
            undecoded = [(name.strip(), email.utils.unquote(val.strip())) for name, _, val in pieces]
            assert message_index._get_params(value) == undecoded, value
            continue
        assert _outcome(lambda v=value: message_index._get_params(v)) == expected, value
        assert _outcome(lambda v=value: message_index._charset(v)) == _outcome(msg.get_content_charset), value
        head = _outcome(lambda v=raw: message_index._head_of([("Content-Type", v)]))
        if isinstance(head, type):
            assert head == expected, value
            continue
        assert f"{head.main}/{head.sub}" == msg.get_content_type(), value
        if head.main == "multipart":
            boundary = msg.get_boundary()
            assert head.boundary == (boundary.encode("utf-8", "surrogateescape") if boundary else None), value


def test_content_disposition_is_compat32s_rfc2183() -> None:
    # ASCII values only: an 8-bit disposition type makes the wire form raise (as the Message-based index did).
    for value in _random_values(2000):
        value = value.replace("text/plain", "attachment").replace("TEXT/HTML", "inline")
        if not value.isascii():
            continue
        msg = Message(policy=compat32)
        msg["Content-Disposition"] = value
        head = _outcome(lambda v=value: message_index._head_of([("Content-Disposition", v)]))
        if isinstance(head, type):
            assert head == _outcome(lambda m=msg: m.get_params(header="content-disposition")), value
            continue
        assert head.attachment == (msg.get_content_disposition() == "attachment"), value
