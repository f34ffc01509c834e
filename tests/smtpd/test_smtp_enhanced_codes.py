"""ENHANCEDSTATUSCODES (RFC 2034): library replies get an RFC 3463 code added in one place."""

from __future__ import annotations

from kantoor.smtpd.replies import with_enhanced_code


def test_known_library_replies_get_specific_codes() -> None:
    assert with_enhanced_code("552 Error: Too much mail data").startswith("552 5.3.4 ")
    assert with_enhanced_code("500 Command line too long") == "500 5.5.2 Command line too long"
    assert with_enhanced_code('500 Error: command "FOO" not recognized') == '500 5.5.1 command "FOO" not recognized'
    assert with_enhanced_code("503 Error: need MAIL command") == "503 5.5.1 need MAIL command"


def test_replies_with_a_code_and_continuations_are_left_alone() -> None:
    assert with_enhanced_code("250 2.1.5 <a@b>: recipient OK") == "250 2.1.5 <a@b>: recipient OK"
    assert with_enhanced_code("535 5.7.8 Authentication credentials invalid").startswith("535 5.7.8 ")
    assert with_enhanced_code("334 VXNlcm5hbWU6") == "334 VXNlcm5hbWU6"
    assert with_enhanced_code("354 End data with <CR><LF>.<CR><LF>").startswith("354 End")
    assert with_enhanced_code("250 OK") == "250 2.0.0 OK"
