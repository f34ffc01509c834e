"""The message index's IMAP wire form (kantoor.storage.message_index.wire): byte for byte what Twisted's
``collapseNestedLists`` sends (RFC 3501 4.2/4.3 quoted strings and literals, 7.4.2 ENVELOPE/BODYSTRUCTURE),
since the frontend sends the stored text as it is."""

from __future__ import annotations

import email.utils
import sys
from pathlib import Path

import pytest
from twisted.mail.imap4 import collapseNestedLists, getEnvelope

from kantoor.storage.message_index import index_message_bytes, wire
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


ODD_HEADERS = [
    b"From: a@b.example\r\nSender: s@b.example\r\nReply-To: r@b.example, t@b.example\r\nTo: x@y.example\r\n\r\n",
    b"From: \"Doe, J\" <j@d.example>, k@d.example\r\nCc: undisclosed-recipients:;\r\nBcc: \r\n\r\nbody",
    b"Subject: no addresses at all\r\n\r\n",
    b"To: =?utf-8?q?Gr=C3=BC=C3=9Fe?= <g@x.example>\r\nFrom: caf\xc3\xa9 <c@x.example>\r\n\r\n",
    b"Reply-To: \r\nSender: \r\nFrom: f@x.example\r\n\r\n",
    b"From: a@b@c, plain, (comment) <x@y>\r\nSubject: quote \" and \\ back\r\nIn-Reply-To: <r@x>\r\n\r\n",
]
REALISTIC = [mail_corpus.message(20261126, index) for index in range(200)]


def _twisted_envelope(raw: bytes) -> list:
    """Twisted's getEnvelope, with a list of no real address as NIL (message_index.py says why)."""
    fields = list(getEnvelope(MimePart(raw)))
    for index in range(2, 8):
        value = fields[index]
        if isinstance(value, list) and all(isinstance(a, (list, tuple)) and len(a) < 4 for a in value):
            fields[index] = None
    return fields


@pytest.mark.parametrize("raw", ODD_HEADERS + REALISTIC[:40])
def test_envelope_is_twisteds_rfc3501_7_4_2(raw: bytes) -> None:
    assert index_message_bytes(raw).envelope == collapseNestedLists([_twisted_envelope(raw)]).decode("latin-1")


def _params(msg, header: str) -> list | None:  # type: ignore[no-untyped-def]
    params = msg.get_params(header=header)
    flat: list[str] = []
    for name, value in (params or [])[1:]:
        value = email.utils.collapse_rfc2231_value(value) if isinstance(value, tuple) else value
        flat += [name.upper().encode("ascii", "replace").decode(), str(value).encode("ascii", "replace").decode()]
    return flat or None


def _reference_structures(part: MimePart) -> tuple[list, list]:
    """BODYSTRUCTURE and BODY (RFC 3501 7.4.2) by compat32 ``email.message.Message`` look-ups on each part."""
    msg, first = part.headers, part.first_headers()
    main, sub = msg.get_content_type().split("/")
    disposition = msg.get_content_disposition()
    disp = [disposition.upper(), _params(msg, "content-disposition")] if disposition else None
    extension = [disp, first.get("content-language"), first.get("content-location")]
    subtype = sub.upper().encode("ascii", "replace").decode()
    if main == "multipart":
        children = []
        for index in range(1000):
            try:
                children.append(_reference_structures(part.getSubPart(index)))
            except IndexError:
                break
        children = children or [(["TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 0, 0],) * 2]
        return ([*(c[0] for c in children), subtype, _params(msg, "content-type"), *extension],
                [*(c[1] for c in children), subtype])
    params = _params(msg, "content-type") or (["CHARSET", "US-ASCII"] if main == "text" else None)
    encoding = (first.get("content-transfer-encoding") or "7BIT").strip().upper()
    basic = [main.upper().encode("ascii", "replace").decode(), subtype, params, first.get("content-id"),
             first.get("content-description"), encoding, len(part.body)]
    lines = part.body.count(b"\n") + (1 if part.body and not part.body.endswith(b"\n") else 0)
    if (main, sub) == ("message", "rfc822"):
        inner = MimePart(part.body)
        inner_extended, inner_basic = _reference_structures(inner)
        envelope = _twisted_envelope(part.body)
        return ([*basic, envelope, inner_extended, lines, first.get("content-md5"), *extension],
                [*basic, envelope, inner_basic, lines])
    if main == "text":
        basic.append(lines)
    return [*basic, first.get("content-md5"), *extension], basic


MIME_SHAPES = [
    b"Content-Type: multipart/mixed; boundary*0=\"ab\"; boundary*1=\"cd\"\r\n\r\n--abcd\r\n"
    b"Content-Type: text/plain; charset*=utf-8''utf-8\r\nContent-Language: nl\r\n\r\nx\r\n--abcd--\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\nno parts",
    b"Content-Type: TEXT/HTML; Charset=\"UTF-8\"; a=\"x;y\"\r\nContent-ID: <i@x>\r\nContent-Description: d\r\n"
    b"Content-MD5: m\r\nContent-Location: l\r\nContent-Transfer-Encoding: Base64 \r\n\r\nw6k=",
    b"Content-Type: application/pdf; name*=utf-8''%C3%A9.pdf\r\nContent-Disposition: attachment; filename=\"a b\"\r\n"
    b"\r\n%PDF",
    b"Content-Type: text\r\nContent-Disposition: \r\n\r\nbad type", b"Subject: x\r\n\r\n", b"",
    b"Content-Type: text/plain; charset=\xff\r\nContent-Description: caf\xc3\xa9\r\n\r\nx\n",
    b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nFrom: i@x\r\n"
    b"Subject: in\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nplain\r\n--i\r\n"
    b"Content-Type: text/html\r\n\r\n<p>x</p>\r\n--i--\r\n\r\n--o--\r\n",
]


@pytest.mark.parametrize("raw", MIME_SHAPES + REALISTIC)
def test_bodystructure_and_body_are_what_the_email_package_gives_rfc3501_7_4_2(raw: bytes) -> None:
    extended, basic = _reference_structures(MimePart(raw))
    index = index_message_bytes(raw)
    assert index.bodystructure == collapseNestedLists([extended]).decode("latin-1")
    assert index.body == collapseNestedLists([basic]).decode("latin-1")


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
