"""The 7-bit conversion for a next hop without 8BITMIME (kantoor.smtpd.seven_bit), field by field:
8-bit header text becomes RFC 2047 encoded words and 8-bit MIME parameters RFC 2231 ones; what cannot be
written in 7-bit (a non-ASCII address or message id, an 8-bit message/partial, 8-bit outside any part)
fails the conversion, which bounces with 5.6.3 (RFC 3463), instead of going out 8-bit."""

from __future__ import annotations

import email.policy
from email import message_from_bytes

import pytest

from kantoor.smtpd.seven_bit import ConversionFailed, to_seven_bit


def test_untouched_fields_keep_their_bytes_and_order() -> None:
    raw = (b"Received: from a by b; Thu, 26 Nov 2026 10:00:00 +0100\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n"
           b"Received: from c by d; Thu, 26 Nov 2026 09:00:00 +0100\r\nX-Odd: spaced  \r\n\r\nplain\r\n")
    out = to_seven_bit(raw)
    assert out.isascii()
    names = [line.split(b":", 1)[0] for line in out.split(b"\r\n\r\n", 1)[0].split(b"\r\n")]
    assert names == [b"Received", b"Subject", b"Received", b"X-Odd", b"MIME-Version", b"Content-Type"]
    assert b"Received: from a by b; Thu, 26 Nov 2026 10:00:00 +0100\r\n" in out
    assert b"X-Odd: spaced  \r\n" in out
    assert message_from_bytes(out, policy=email.policy.default)["Subject"] == "Grüße"


def test_latin1_header_bytes_are_taken_as_latin1_rfc2047() -> None:
    out = to_seven_bit(b"From: Ren\xe9 <rene@example.org>\r\nSubject: caf\xe9\r\n\r\nhi\r\n")
    message = message_from_bytes(out, policy=email.policy.default)
    assert out.isascii() and message["Subject"] == "café"
    assert message["From"].addresses[0].display_name == "René"


def test_folded_8bit_field_is_unfolded_before_it_is_encoded_rfc5322_2_2_3() -> None:
    out = to_seven_bit(b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n aus K\xc3\xb6ln\r\n\r\nhi\r\n")
    assert message_from_bytes(out, policy=email.policy.default)["Subject"] == "Grüße aus Köln"


def test_8bit_file_name_becomes_an_rfc2231_parameter() -> None:
    raw = (b"MIME-Version: 1.0\r\nContent-Type: application/octet-stream; name=\"K\xc3\xb6ln.bin\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n")
    out = to_seven_bit(raw)
    assert b"name*=utf-8''K%C3%B6ln.bin" in out
    assert message_from_bytes(out, policy=email.policy.default).get_param("name") == "Köln.bin"


@pytest.mark.parametrize("raw", [
    b"Message-ID: <\xc3\xa4@example.org>\r\n\r\nhi\r\n",
    b"To: j\xc3\xb6s@example.org\r\n\r\nhi\r\n",
    b"MIME-Version: 1.0\r\nContent-Type: message/partial; id=1; number=1\r\n\r\nSubject: x\r\n\r\nK\xc3\xb6ln\r\n",
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"pre \xc3\xa4\r\n--XX\r\n\r\nhi\r\n--XX--\r\n",
], ids=["message-id", "address", "message-partial", "preamble"])
def test_what_cannot_be_7bit_fails_the_conversion_rfc3463_x_6_3(raw: bytes) -> None:
    with pytest.raises(ConversionFailed):
        to_seven_bit(raw)


def test_7bit_message_partial_passes_unchanged() -> None:
    raw = (b"MIME-Version: 1.0\r\nContent-Type: message/partial; id=1; number=1\r\n\r\n"
           b"Subject: x\r\n\r\nplain\r\n")
    assert to_seven_bit(raw) == raw
