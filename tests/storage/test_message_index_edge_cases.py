"""The message index on odd and hostile input, against literal expected values: RFC 2231 parameter
continuations and charsets, RFC 2047 encoded words, raw 8-bit header text (RFC 6532), message/rfc822 parts,
CR-only and LF-only line ends, a missing header/body separator, multiparts without parts, attachment text
left out of the search text, Date zones (RFC 5322 3.3) and nesting deeper than the text index goes."""

from __future__ import annotations

import dataclasses
import datetime
import sys
from pathlib import Path

import pytest

from kantoor.storage import message_index
from kantoor.storage.message_index import index_message_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import mail_corpus  # noqa: E402  (the benchmark's generator of realistic messages)

CASES = [
    pytest.param(
        (
            b'Content-Type: multipart/mixed; boundary*0="ab"; boundary*1="'
            b'cd"\r\n\r\n--abcd\r\nContent-Type: application/octet-stream; name*'
            b'0*=utf-8\'\'%C3%A9t%C3%A9; name*1=".pdf"\r\nContent-Disposition:'
            b" attachment; filename*=iso-8859-1'fr'%E9t%E9.pdf; size=3\r\n\r\n"
            b'abc\r\n--abcd--\r\n'
        ),
        {
            'envelope': '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
            'bodystructure': (
                '(("APPLICATION" "OCTET-STREAM" ("NAME" "?t?.pdf") NIL NIL "7'
                'BIT" 3 NIL ("ATTACHMENT" ("SIZE" "3" "FILENAME" "?t?.pdf")) '
                'NIL NIL) "MIXED" ("BOUNDARY" "abcd") NIL NIL NIL)'
            ),
            'body': '(("APPLICATION" "OCTET-STREAM" ("NAME" "?t?.pdf") NIL NIL "7BIT" 3) "MIXED")',
            'sent_date': None,
            'headers': [
                ('content-type', 'multipart/mixed; boundary*0="ab"; boundary*1="cd"'),
            ],
            'text': '',
            'subject': '',
            'from_addr': '',
            'to_addr': '',
            'message_id': '',
            'date': None,
        },
        id='rfc2231_continued_boundary_and_filename',
    ),
    pytest.param(
        (
            b'Subject: =?utf-8?q?caf=C3=A9?= raw \xc3\xa9 and \xff\r\nFrom: =?iso-885'
            b'9-1?q?J=FCrgen?= <j@x.example>\r\nTo: "=?utf-8?q?Z=C3=B6e?=" <'
            b'z@x.example>, \xff@x\r\nX-Bogus: =?bogus?q?x?=\r\nContent-Type: tex'
            b't/plain; charset=\xff\r\n\r\nbody \xe9'
        ),
        {
            'envelope': (
                '(NIL "=?utf-8?q?caf=C3=A9?= raw ?? and ?" (("=?iso-8859-1?q?'
                'J=FCrgen?=" NIL "j" "x.example")) (("=?iso-8859-1?q?J=FCrgen'
                '?=" NIL "j" "x.example")) (("=?iso-8859-1?q?J=FCrgen?=" NIL '
                '"j" "x.example")) (("=?utf-8?q?Z=C3=B6e?=" NIL "z" "x.exampl'
                'e") (NIL NIL "?" "x")) NIL NIL NIL NIL)'
            ),
            'bodystructure': '("TEXT" "PLAIN" ("CHARSET" "?") NIL NIL "7BIT" 6 1 NIL NIL NIL NIL)',
            'body': '("TEXT" "PLAIN" ("CHARSET" "?") NIL NIL "7BIT" 6 1)',
            'sent_date': None,
            'headers': [
                ('subject', '=?utf-8?q?caf=c3=a9?= raw é and �'),
                ('from', 'jürgen <j@x.example>'),
                ('to', '" zöe " <z@x.example>, \\ufffd@x'),
                ('x-bogus', '=?bogus?q?x?='),
                ('content-type', 'text/plain; charset=�'),
            ],
            'text': 'body �',
            'subject': '=?utf-8?q?caf=C3=A9?= raw é and �',
            'from_addr': 'Jürgen <j@x.example>',
            'to_addr': '" Zöe " <z@x.example>, \\ufffd@x',
            'message_id': '',
            'date': None,
        },
        id='encoded_words_and_8bit_headers',
    ),
    pytest.param(
        (
            b'From: outer@x.example\r\nContent-Type: multipart/mixed; bounda'
            b'ry=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Dispositi'
            b'on: attachment\r\n\r\nFrom: inner@y.example\r\nSubject: Inner\r\nCon'
            b'tent-Type: text/html; charset=utf-8\r\n\r\n<p>Inner <b>TEXT</b><'
            b'/p>\r\n--b--\r\n'
        ),
        {
            'envelope': (
                '(NIL NIL ((NIL NIL "outer" "x.example")) ((NIL NIL "outer" "'
                'x.example")) ((NIL NIL "outer" "x.example")) NIL NIL NIL NIL'
                ' NIL)'
            ),
            'bodystructure': (
                '(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 105 (NIL "Inner" ((N'
                'IL NIL "inner" "y.example")) ((NIL NIL "inner" "y.example"))'
                ' ((NIL NIL "inner" "y.example")) NIL NIL NIL NIL NIL) ("TEXT'
                '" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 24 1 NIL NIL NIL'
                ' NIL) 5 NIL ("ATTACHMENT" NIL) NIL NIL) "MIXED" ("BOUNDARY" '
                '"b") NIL NIL NIL)'
            ),
            'body': (
                '(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 105 (NIL "Inner" ((N'
                'IL NIL "inner" "y.example")) ((NIL NIL "inner" "y.example"))'
                ' ((NIL NIL "inner" "y.example")) NIL NIL NIL NIL NIL) ("TEXT'
                '" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 24 1) 5) "MIXED"'
                ')'
            ),
            'sent_date': None,
            'headers': [
                ('from', 'outer@x.example'),
                ('content-type', 'multipart/mixed; boundary=b'),
            ],
            'text': ' inner text ',
            'subject': '',
            'from_addr': 'outer@x.example',
            'to_addr': '',
            'message_id': '',
            'date': None,
        },
        id='message_rfc822_part',
    ),
    pytest.param(
        b'',
        {
            'envelope': '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
            'bodystructure': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)',
            'body': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0)',
            'sent_date': None,
            'headers': [],
            'text': '',
            'subject': '',
            'from_addr': '',
            'to_addr': '',
            'message_id': '',
            'date': None,
        },
        id='empty_message',
    ),
    pytest.param(
        b'Subject: only a header',
        {
            'envelope': '(NIL "only a header" NIL NIL NIL NIL NIL NIL NIL NIL)',
            'bodystructure': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)',
            'body': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0)',
            'sent_date': None,
            'headers': [
                ('subject', 'only a header'),
            ],
            'text': '',
            'subject': 'only a header',
            'from_addr': '',
            'to_addr': '',
            'message_id': '',
            'date': None,
        },
        id='no_blank_line',
    ),
    pytest.param(
        b'Subject: cr only\rTo: a@b.example\r\rBody\rText\r',
        {
            'envelope': '(NIL "cr only" NIL NIL NIL ((NIL NIL "a" "b.example")) NIL NIL NIL NIL)',
            'bodystructure': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)',
            'body': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0)',
            'sent_date': None,
            'headers': [
                ('subject', 'cr only'),
                ('to', 'a@b.example'),
            ],
            'text': '',
            'subject': 'cr only',
            'from_addr': '',
            'to_addr': 'a@b.example',
            'message_id': '',
            'date': None,
        },
        id='cr_only_line_ends',
    ),
    pytest.param(
        (
            b'Subject: lf\nFrom: a@b.example\nContent-Type: text/plain; char'
            b'set=utf-8\n\nStra\xc3\x9fe\n\nZ\xc3\xbcrich\n'
        ),
        {
            'envelope': (
                '(NIL "lf" ((NIL NIL "a" "b.example")) ((NIL NIL "a" "b.examp'
                'le")) ((NIL NIL "a" "b.example")) NIL NIL NIL NIL NIL)'
            ),
            'bodystructure': '("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 17 3 NIL NIL NIL NIL)',
            'body': '("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 17 3)',
            'sent_date': None,
            'headers': [
                ('subject', 'lf'),
                ('from', 'a@b.example'),
                ('content-type', 'text/plain; charset=utf-8'),
            ],
            'text': 'straße zürich ',
            'subject': 'lf',
            'from_addr': 'a@b.example',
            'to_addr': '',
            'message_id': '',
            'date': None,
        },
        id='lf_only_line_ends',
    ),
    pytest.param(
        b'Content-Type: multipart/alternative; boundary=x\r\n\r\nno delimiter here',
        {
            'envelope': '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
            'bodystructure': (
                '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) '
                '"ALTERNATIVE" ("BOUNDARY" "x") NIL NIL NIL)'
            ),
            'body': '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) "ALTERNATIVE")',
            'sent_date': None,
            'headers': [
                ('content-type', 'multipart/alternative; boundary=x'),
            ],
            'text': '',
            'subject': '',
            'from_addr': '',
            'to_addr': '',
            'message_id': '',
            'date': None,
        },
        id='multipart_without_parts',
    ),
    pytest.param(
        b'To: undisclosed-recipients:;\r\nCc: \r\nReply-To: \r\nSender: \r\nSubject: s\r\n\r\n',
        {
            'envelope': '(NIL "s" NIL NIL "" NIL "" NIL NIL NIL)',
            'bodystructure': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)',
            'body': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0)',
            'sent_date': None,
            'headers': [
                ('to', 'undisclosed-recipients:;'),
                ('cc', ''),
                ('reply-to', ''),
                ('sender', ''),
                ('subject', 's'),
            ],
            'text': '',
            'subject': 's',
            'from_addr': '',
            'to_addr': 'undisclosed-recipients:;',
            'message_id': '',
            'date': None,
        },
        id='missing_and_empty_address_fields',
    ),
    pytest.param(
        (
            b'Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Ty'
            b'pe: text/plain\r\n\r\nvisible\r\n--b\r\nContent-Type: text/plain\r\nCo'
            b'ntent-Disposition: ATTACHMENT; filename="a.txt"\r\n\r\nhidden\r\n-'
            b'-b--\r\n'
        ),
        {
            'envelope': '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
            'bodystructure': (
                '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1 N'
                'IL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL N'
                'IL "7BIT" 6 1 NIL ("ATTACHMENT" ("FILENAME" "a.txt")) NIL NI'
                'L) "MIXED" ("BOUNDARY" "b") NIL NIL NIL)'
            ),
            'body': (
                '(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1) '
                '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 6 1) "'
                'MIXED")'
            ),
            'sent_date': None,
            'headers': [
                ('content-type', 'multipart/mixed; boundary=b'),
            ],
            'text': 'visible',
            'subject': '',
            'from_addr': '',
            'to_addr': '',
            'message_id': '',
            'date': None,
        },
        id='attachment_text_not_indexed',
    ),
    pytest.param(
        (
            b'Content-Type: image/png; name="a \\"b\\".png"\r\nContent-ID: <id'
            b'@x>\r\nContent-Description: d"q\\\r\nContent-MD5: Q2hlY2s=\r\nConte'
            b'nt-Language: en, nl\r\nContent-Location: http://x/y\r\nContent-D'
            b'isposition: inline\r\nContent-Transfer-Encoding: Base64 \r\n\r\niV'
            b'BORw0K'
        ),
        {
            'envelope': '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
            'bodystructure': (
                '("IMAGE" "PNG" ("NAME" "a \\"b\\".png") "<id@x>" "d\\"q\\\\" "BAS'
                'E64" 8 "Q2hlY2s=" ("INLINE" NIL) "en, nl" "http://x/y")'
            ),
            'body': '("IMAGE" "PNG" ("NAME" "a \\"b\\".png") "<id@x>" "d\\"q\\\\" "BASE64" 8)',
            'sent_date': None,
            'headers': [
                ('content-type', 'image/png; name="a \\"b\\".png"'),
                ('content-id', '<id@x>'),
                ('content-description', 'd"q\\'),
                ('content-md5', 'q2hly2s='),
                ('content-language', 'en, nl'),
                ('content-location', 'http://x/y'),
                ('content-disposition', 'inline'),
                ('content-transfer-encoding', 'base64 '),
            ],
            'text': '',
            'subject': '',
            'from_addr': '',
            'to_addr': '',
            'message_id': '',
            'date': None,
        },
        id='extension_fields_quoted',
    ),
    pytest.param(
        (
            b'Subject: Tabs\tand  SPACES\r\n  folded\r\nContent-Type: text/plai'
            b'n; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-pri'
            b'ntable\r\n\r\n\xc0=C9=CE\r\n\r\n\r\nRUNS   of  =DF space\t\tend'
        ),
        {
            'envelope': '(NIL "Tabs\tand  SPACES  folded" NIL NIL NIL NIL NIL NIL NIL NIL)',
            'bodystructure': (
                '("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL "QUOTED-PRINTABLE" 38 4 NIL NIL NIL NIL)'
            ),
            'body': '("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL "QUOTED-PRINTABLE" 38 4)',
            'sent_date': None,
            'headers': [
                ('subject', 'tabs and spaces folded'),
                ('content-type', 'text/plain; charset=iso-8859-1'),
                ('content-transfer-encoding', 'quoted-printable'),
            ],
            'text': 'àéî runs of ß space end',
            'subject': 'Tabs and SPACES folded',
            'from_addr': '',
            'to_addr': '',
            'message_id': '',
            'date': None,
        },
        id='folded_header_and_latin1_text',
    ),
    pytest.param(
        (
            b'Date: Mon, 1 Jan 2024 23:30:00 -0500\r\nSubject: =?utf-8?b?w4l'
            b'xdWlwZQ==?=\r\n =?utf-8?q?_r=C3=A9union?=\r\nMessage-ID: <a"b@c>'
            b'\r\n\r\nx'
        ),
        {
            'envelope': (
                '("Mon, 1 Jan 2024 23:30:00 -0500" "=?utf-8?b?w4lxdWlwZQ==?= '
                '=?utf-8?q?_r=C3=A9union?=" NIL NIL NIL NIL NIL NIL NIL "<a\\"'
                'b@c>")'
            ),
            'bodystructure': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1 1 NIL NIL NIL NIL)',
            'body': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1 1)',
            'sent_date': datetime.date(2024, 1, 1),
            'headers': [
                ('date', 'mon, 1 jan 2024 23:30:00 -0500'),
                ('subject', 'équipe réunion'),
                ('message-id', '<a"b@c>'),
            ],
            'text': 'x',
            'subject': 'Équipe réunion',
            'from_addr': '',
            'to_addr': '',
            'message_id': '<a"b@c>',
            'date': datetime.datetime(2024, 1, 2, 4, 30, tzinfo=datetime.UTC),
        },
        id='date_with_zone_to_utc',
    ),
    pytest.param(
        b'Date: 2 Jan 2024 10:00:00 -0000\r\nFrom: "Doe, J" <j@d.example>, k@d.example, a@b@c\r\n\r\n',
        {
            'envelope': (
                '("2 Jan 2024 10:00:00 -0000" NIL (("Doe, J" NIL "j" "d.examp'
                'le") (NIL NIL "k" "d.example") (NIL NIL "") (NIL NIL "" "c")'
                ') (("Doe, J" NIL "j" "d.example") (NIL NIL "k" "d.example") '
                '(NIL NIL "") (NIL NIL "" "c")) (("Doe, J" NIL "j" "d.example'
                '") (NIL NIL "k" "d.example") (NIL NIL "") (NIL NIL "" "c")) '
                'NIL NIL NIL NIL NIL)'
            ),
            'bodystructure': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)',
            'body': '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0)',
            'sent_date': datetime.date(2024, 1, 2),
            'headers': [
                ('date', '2 jan 2024 10:00:00 -0000'),
                ('from', '"doe, j" <j@d.example>, k@d.example, a@b@c'),
            ],
            'text': '',
            'subject': '',
            'from_addr': '"Doe, J" <j@d.example>, k@d.example, a@b@c',
            'to_addr': '',
            'message_id': '',
            'date': datetime.datetime(2024, 1, 2, 10, 0, tzinfo=datetime.UTC),
        },
        id='date_floating_taken_as_utc',
    ),
    pytest.param(
        (
            b'Content-Type: text/plain; charset=utf-8\r\n\r\n\xce\xa3'
            b'\xce\x9f\xce\xa6\xce\x9f\xce\xa3 \xc4\xb0stanbul \xe1\xba\x9e\r\n'
        ),
        {
            'envelope': '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
            'bodystructure': '("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 26 1 NIL NIL NIL NIL)',
            'body': '("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 26 1)',
            'sent_date': None,
            'headers': [
                ('content-type', 'text/plain; charset=utf-8'),
            ],
            'text': 'σοφος i̇stanbul ß ',
            'subject': '',
            'from_addr': '',
            'to_addr': '',
            'message_id': '',
            'date': None,
        },
        id='greek_final_sigma_text',
    ),

]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_index_of_odd_message_rfc3501_7_4_2_rfc2045_rfc2047_rfc2231(raw: bytes, expected: dict) -> None:
    assert dataclasses.asdict(index_message_bytes(raw)) == expected


def _nested(levels: int) -> bytes:
    raw = b"Content-Type: text/plain\r\n\r\ndeep text"
    for level in range(levels):
        raw = (f"Content-Type: multipart/mixed; boundary=l{level}\r\n\r\n--l{level}\r\n".encode() + raw
               + f"\r\n--l{level}\r\nContent-Type: text/plain\r\n\r\nlevel {level}\r\n--l{level}--\r\n".encode())
    return raw


def test_text_deeper_than_twenty_levels_is_not_indexed_but_bodystructure_has_it() -> None:
    shallow, deep = index_message_bytes(_nested(20)), index_message_bytes(_nested(21))
    # The entity at the top is depth 0: the twentieth multipart's parts are at depth 20, still indexed.
    assert shallow.text == "deep text " + " ".join(f"level {level}" for level in range(20))
    assert deep.text == " ".join(f"level {level}" for level in range(1, 21))
    assert deep.bodystructure.count('"MIXED"') == 21 and deep.bodystructure.startswith("(" * 22 + '"TEXT" "PLAIN"')


def test_text_stops_at_max_text_characters() -> None:
    part = b"--b\r\nContent-Type: text/plain\r\n\r\n" + b"word " * 10_000 + b"\r\n"
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part * 3 + b"--b--\r\n"
    text = index_message_bytes(raw).text
    assert len(text) == message_index.MAX_TEXT and text.startswith("word word")


def _clear_caches() -> None:
    for function in (message_index._head, message_index._addresses, message_index._header_text,
                     message_index._charset):
        function.cache_clear()


def test_remembered_values_do_not_change_any_index() -> None:
    # Header values and part header blocks are remembered across messages: what a message's index holds
    # must not depend on what was indexed before it.
    messages = [mail_corpus.message(5, i) for i in range(30)] + [raw for raw, _ in (c.values for c in CASES)]
    _clear_caches()
    cold = []
    for raw in messages:
        _clear_caches()
        cold.append(index_message_bytes(raw))
    warm = [index_message_bytes(raw) for raw in messages]
    assert warm == cold
    assert [index_message_bytes(raw) for raw in reversed(messages)] == list(reversed(cold))


def test_long_header_values_are_indexed_as_short_ones() -> None:
    # Values longer than what is remembered take the same path without the memo.
    long_subject = "=?utf-8?q?caf=C3=A9?= " + "x" * (message_index._CACHED + 10)
    raw = f"Subject: {long_subject}\r\nFrom: {'a' * 600}@b.example\r\n\r\n".encode()
    index = index_message_bytes(raw)
    assert index.subject == "café " + "x" * (message_index._CACHED + 10)
    assert index.headers[0] == ("subject", index.subject.lower())
    assert index.envelope.startswith(f'(NIL "{long_subject}" ((NIL NIL "{"a" * 600}" "b.example"))')


def test_deeply_nested_message_is_indexed_one_frame_per_level() -> None:
    # The Message-based walk indexed 800 levels of multipart and message/rfc822 nesting within Python's
    # recursion limit; so must this one (a delivery whose index raises is refused).
    raw = b"Content-Type: text/plain\r\n\r\ndeep text"
    for level in range(800):
        if level % 2:
            raw = b"Content-Type: message/rfc822\r\n\r\nSubject: s\r\n" + raw
        else:
            raw = f"Content-Type: multipart/mixed; boundary=l{level}\r\n\r\n--l{level}\r\n".encode() + raw + b"\r\n"
    index = index_message_bytes(raw)
    assert index.bodystructure.count('"RFC822"') == 400 and index.text == ""


# Headers the standard library gives up on (it raises): the message is still indexed — and so can be
# delivered — with the undecodable text as it stands (RFC 2047 section 6.3: an encoded word that cannot be
# decoded is shown as it is), instead of a delivery that fails for good.
@pytest.mark.parametrize(("raw", "field", "expected"), [
    (b"From: a@x\r\nSubject: =?utf-8?b?Y?=\r\n\r\nhi\r\n", "subject", "=?utf-8?b?Y?="),
    (b"From: =?utf-8?b?abcde?= <a@x>\r\n\r\nhi\r\n", "envelope",
     '(NIL NIL (("=?utf-8?b?abcde?=" NIL "a" "x")) (("=?utf-8?b?abcde?=" NIL "a" "x")) '
     '(("=?utf-8?b?abcde?=" NIL "a" "x")) NIL NIL NIL NIL NIL)'),
    (b"From: a@x\r\nContent-Type: text/plain; name*0=\"a\"; name*=utf-8''b\r\n\r\nhi\r\n", "bodystructure",
     '("TEXT" "PLAIN" ("NAME*0" "a" "NAME*" "utf-8\'\'b") NIL NIL "7BIT" 4 1 NIL NIL NIL NIL)'),
    ("From: a@x\r\nContent-Disposition: café\r\n\r\nhi\r\n".encode(), "bodystructure",
     '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 4 1 NIL ("CAF??" NIL) NIL NIL)'),
])
def test_headers_the_standard_library_cannot_decode_are_indexed_as_they_stand(raw: bytes, field: str,
                                                                               expected: str) -> None:
    assert getattr(index_message_bytes(raw), field) == expected


def test_the_search_indexers_rows_are_the_full_index_ones() -> None:
    # The search backlog writes SEARCH rows from search_fields(), a walk without ENVELOPE and BODYSTRUCTURE:
    # they must be exactly what the whole index gives, for realistic mail, every odd case and deep nesting.
    messages = ([mail_corpus.message(7, i) for i in range(60)] + [raw for raw, _ in (c.values for c in CASES)]
                + [_nested(20), _nested(21)])
    for raw in messages:
        index = index_message_bytes(raw)
        assert message_index.search_fields(raw) == (index.headers, index.text), raw[:200]
