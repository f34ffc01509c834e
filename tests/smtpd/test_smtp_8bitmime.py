"""8-bit mail for a next hop without 8BITMIME is converted to 7-bit before it is DKIM-signed
(RFC 6152 section 3, RFC 6376); an SMTPUTF8 message for a next hop without SMTPUTF8 bounces with
5.6.7 (RFC 6531 section 3.4). ``seven.test`` is a fake MX offering neither, ``eight.test`` one
offering both."""

from __future__ import annotations

import email.policy
import re
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import dkim
import pytest
from harness import launch_server

TEXT = "Grüße aus Köln — a line with ümlauts and an em dash.\r\nSecond line: naïve café.\r\n"


@pytest.fixture(scope="module")
def seven(make_module_fake_mx: Any) -> Any:
    return make_module_fake_mx(hidden={"8BITMIME", "SMTPUTF8"})


@pytest.fixture(scope="module")
def eight(make_module_fake_mx: Any) -> Any:
    return make_module_fake_mx()


@pytest.fixture(scope="module")
def srv(seven: Any, eight: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    proc = launch_server(tmp_path_factory.mktemp("eightbit") / "data",
                         KANTOOR_DELIVERY_STATIC_MX=f"seven.test=127.0.0.1:{seven.port},"
                                                    f"eight.test=127.0.0.1:{eight.port}",
                         KANTOOR_DELIVERY_RETRY_BASE_SECONDS="0.3", KANTOOR_DELIVERY_POLL_SECONDS="0.2")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def dkim_txt(srv: Any) -> bytes:
    """The DKIM record of the bootstrap domain, as `kantoor domain dns` prints it."""
    record = re.search(r"_domainkey\.localhost\.\s+IN\s+TXT\s+\((.*)\)", srv.cli("domain", "dns", "localhost").stdout)
    assert record is not None
    return "".join(re.findall(r'"([^"]*)"', record.group(1))).encode()


def _verifies(content: bytes, txt: bytes) -> bool:
    return bool(dkim.verify(content, dnsfunc=lambda name, timeout=5: txt))


def _eight_bit_message(sender: str, subject: str) -> bytes:
    return (f"From: {sender}\r\nTo: friend\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + TEXT).encode()


def _bounce_status(mail: Any, login: str, password: str) -> str:
    """The delivery-status part of the first bounce in the sender's INBOX (waited for)."""
    deadline = time.monotonic() + 20
    while not (bounces := [m for m in mail.inbox(login, password) if b"Undelivered Mail" in m]):
        assert time.monotonic() < deadline, "no bounce"
        time.sleep(0.1)
    return bounces[0].split(b"Content-Type: message/delivery-status", 1)[1].decode()


def _submit(srv: Any, mail: Any, recipient: str, message_for: Any, options: list[str]) -> tuple[str, str]:
    login, password = srv.make_user()
    with mail.submission() as client:
        client.login(login, password)
        assert client.sendmail(login, [recipient], message_for(login), mail_options=options) == {}
    return login, password


def test_8bit_body_is_sent_as_7bit_to_a_hop_without_8bitmime_and_still_verifies_rfc6152_section_3(  # type: ignore[no-untyped-def]
        srv, mail_for, seven, dkim_txt) -> None:
    mail = mail_for(srv)
    friend = f"{mail.unique('friend')}@seven.test"
    subject = mail.unique("seven-")
    _submit(srv, mail, friend, lambda login: _eight_bit_message(login, subject), ["BODY=8BITMIME"])
    [delivered] = seven.wait_for(friend)
    assert delivered.content.isascii()
    assert not any(o.startswith("BODY=") for o in delivered.mail_options)
    message = message_from_bytes(delivered.content)
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert message.get_payload(decode=True).decode("utf-8").replace("\r\n", "\n") == TEXT.replace("\r\n", "\n")
    assert _verifies(delivered.content, dkim_txt)  # signed after the conversion


def test_8bit_attachment_becomes_base64_rfc2045_section_6_8(srv, mail_for, seven, dkim_txt) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(srv)
    friend = f"{mail.unique('friend')}@seven.test"
    subject = mail.unique("attach-")
    binary = bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"")

    def message_for(login: str) -> bytes:
        return (f"From: {login}\r\nTo: friend\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
                'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
                "--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                f"{TEXT}--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                ).encode() + binary + b"\r\n--b1--\r\n"

    _submit(srv, mail, friend, message_for, ["BODY=8BITMIME"])
    [delivered] = seven.wait_for(friend)
    assert delivered.content.isascii()
    text, attachment = message_from_bytes(delivered.content).get_payload()
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_payload(decode=True) == binary
    assert _verifies(delivered.content, dkim_txt)


def test_8bit_body_goes_unchanged_to_a_hop_with_8bitmime_rfc6152_section_2(srv, mail_for, eight, dkim_txt) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(srv)
    friend = f"{mail.unique('friend')}@eight.test"
    subject = mail.unique("eight-")
    _submit(srv, mail, friend, lambda login: _eight_bit_message(login, subject), ["BODY=8BITMIME"])
    [delivered] = eight.wait_for(friend)
    assert "BODY=8BITMIME" in delivered.mail_options
    assert TEXT.encode() in delivered.content
    assert _verifies(delivered.content, dkim_txt)


def test_smtputf8_message_bounces_5_6_7_for_a_hop_without_smtputf8_rfc6531_section_3_4(  # type: ignore[no-untyped-def]
        srv, mail_for, seven, eight) -> None:
    mail = mail_for(srv)
    subject = mail.unique("utf8-")
    friend = f"{mail.unique('friend')}@seven.test"

    def message_for(login: str) -> bytes:
        return (f"From: {login}\r\nTo: Jörg <{friend}>\r\nSubject: {subject} für Jörg\r\n\r\n{TEXT}").encode()

    login, password = _submit(srv, mail, friend, message_for, ["SMTPUTF8", "BODY=8BITMIME"])
    status = _bounce_status(mail, login, password)
    assert f"Final-Recipient: rfc822; {friend}" in status and "Status: 5.6.7" in status, status
    assert seven.messages_for(friend) == []
    # The same message to a hop that speaks SMTPUTF8 goes through.
    other = f"{mail.unique('friend')}@eight.test"
    _submit(srv, mail, other, message_for, ["SMTPUTF8", "BODY=8BITMIME"])
    assert "SMTPUTF8" in eight.wait_for(other)[0].mail_options


def test_swaks_8bit_submission_is_converted_for_a_7bit_hop(srv, mail_for, seven, dkim_txt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from harness import require_tool

    swaks = require_tool("swaks")
    mail = mail_for(srv)
    login, password = srv.make_user()
    friend = f"{mail.unique('swaks')}@seven.test"
    data = tmp_path / "message.eml"
    data.write_bytes(_eight_bit_message(login, mail.unique("swaks-8bit-")))
    result = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{srv.ports['submission']}", "--auth", "LOGIN", "--auth-user", login,
         "--auth-password", password, "--from", login, "--to", friend, "--data", str(data), "--silent", "2"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    [delivered] = seven.wait_for(friend)
    assert delivered.content.isascii() and b"K=C3=B6ln" in delivered.content
    assert _verifies(delivered.content, dkim_txt)


def test_8bit_header_fields_are_down_converted_for_a_7bit_hop_rfc2047_rfc2231(  # type: ignore[no-untyped-def]
        srv, mail_for, seven, dkim_txt) -> None:
    """Raw UTF-8 in a subject, a display name and an attachment's file name (sent without SMTPUTF8, as many
    clients do) goes to a hop without 8BITMIME as encoded words and an RFC 2231 parameter, and decodes back."""
    mail = mail_for(srv)
    friend = f"{mail.unique('friend')}@seven.test"
    subject = mail.unique("hdr-")

    def message_for(login: str) -> bytes:
        return (f"From: Zoë Müller <{login}>\r\nTo: friend\r\nSubject: {subject} Grüße aus Köln\r\n"
                'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
                f"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{TEXT}"
                '--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="Grüße.pdf"\r\n'
                "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n").encode()

    login, _ = _submit(srv, mail, friend, message_for, ["BODY=8BITMIME"])
    [delivered] = seven.wait_for(friend)
    assert delivered.content.isascii()
    message = message_from_bytes(delivered.content, policy=email.policy.default)
    assert message["Subject"] == f"{subject} Grüße aus Köln"
    assert message["From"].addresses[0].display_name == "Zoë Müller"
    assert message["From"].addresses[0].addr_spec == login
    [attachment] = message.iter_attachments()
    assert attachment.get_filename() == "Grüße.pdf"
    assert attachment.get_content() == b"%PDF-1.4\n"
    assert _verifies(delivered.content, dkim_txt)


def test_8bit_message_partial_bounces_5_6_3_for_a_7bit_hop_rfc2046_section_5_2_2_1(  # type: ignore[no-untyped-def]
        srv, mail_for, seven) -> None:
    """A message/partial must be 7bit and cannot be re-encoded: for a hop without 8BITMIME it bounces with
    X.6.3 (RFC 3463: conversion required but not supported) instead of going out 8-bit."""
    mail = mail_for(srv)
    friend = f"{mail.unique('friend')}@seven.test"
    subject = mail.unique("partial-")

    def message_for(login: str) -> bytes:
        return (f"From: {login}\r\nTo: friend\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
                'Content-Type: message/partial; id="p1@example.org"; number=1; total=2\r\n\r\n'
                f"Subject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{TEXT}").encode()

    login, password = _submit(srv, mail, friend, message_for, ["BODY=8BITMIME"])
    status = _bounce_status(mail, login, password)
    assert f"Final-Recipient: rfc822; {friend}" in status and "Status: 5.6.3" in status, status
    assert seven.messages_for(friend) == []
