"""The message index's IMAP wire form (kantoor.storage.message_index.wire): byte for byte what Twisted's
``collapseNestedLists`` sends (RFC 3501 4.2/4.3 quoted strings and literals, 7.4.2 ENVELOPE/BODYSTRUCTURE),
since the frontend sends the stored text as it is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from twisted.mail.imap4 import collapseNestedLists

from kantoor.storage.message_index import body_structures, envelope, wire
from kantoor.storage.mime import MimePart

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import mail_corpus  # noqa: E402  (the benchmark's generator of realistic messages)

EDGE_VALUES = [
    [None, 0, 7, 123456789, True, "", "plain", 'with "quotes"', "back\\slash", '\\"both"\\'],
    ["line\r\nbreak", "cr\ronly", "lf\nonly", "x" * 1000, "y" * 1001],
    [b"bytes", b"", [[], [None, [b"deep", ["deeper", 1]]]], ("a", "tuple")],
]


@pytest.mark.parametrize("value", EDGE_VALUES)
def test_wire_quotes_and_literals_exactly_as_twisted_rfc3501_4_3(value) -> None:  # type: ignore[no-untyped-def]
    assert wire(value) == collapseNestedLists([value]).decode("latin-1")


def test_wire_refuses_non_ascii_text_as_twisted_does() -> None:
    with pytest.raises(UnicodeEncodeError):
        collapseNestedLists([["Grüße"]])
    with pytest.raises(UnicodeEncodeError):
        wire(["Grüße"])


def test_envelope_and_bodystructure_of_realistic_mail_match_twisteds_wire_form_rfc3501_7_4_2() -> None:
    # multipart, attachments, non-ASCII headers (RFC 2047 encoded), forwarded messages
    for index in range(200):
        top = MimePart(mail_corpus.message(20261126, index))
        extended, basic = body_structures(top)
        for value in (envelope(top), extended, basic):
            assert wire(value) == collapseNestedLists([value]).decode("latin-1")


ODD_HEADERS = [
    b"From: a@b.example\r\nSender: s@b.example\r\nReply-To: r@b.example, t@b.example\r\nTo: x@y.example\r\n\r\n",
    b"From: \"Doe, J\" <j@d.example>, k@d.example\r\nCc: undisclosed-recipients:;\r\nBcc: \r\n\r\nbody",
    b"Subject: no addresses at all\r\n\r\n",
    b"To: =?utf-8?q?Gr=C3=BC=C3=9Fe?= <g@x.example>\r\nFrom: caf\xc3\xa9 <c@x.example>\r\n\r\n",
    b"Reply-To: \r\nSender: \r\nFrom: f@x.example\r\n\r\n",
]


@pytest.mark.parametrize("raw", ODD_HEADERS + [mail_corpus.message(7, i) for i in range(40)])
def test_envelope_is_twisteds_with_each_address_header_parsed_once(raw: bytes) -> None:
    from twisted.mail.imap4 import getEnvelope

    from kantoor.storage.message_index import _twisted_envelope

    top = MimePart(raw)
    assert _twisted_envelope(top) == list(getEnvelope(top))


@pytest.mark.parametrize("value", ["plain text", "x=?y", "=?utf-8?q?caf=C3=A9?= bar", "caf\udcc3\udca9 raw 8-bit",
                                   "=?bogus?q?x?=", "a =?iso-8859-1?b?4Q==?=", "", " spaced  out "])
def test_decoded_header_fast_path_gives_what_make_header_gives(value: str) -> None:
    import email.header

    from kantoor.storage.message_index import _decoded

    try:
        expected = str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        expected = value
    assert _decoded(value) == expected
