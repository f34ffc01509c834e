"""Bad input (RFC 5321 sections 4.2, 4.5.3): protocol errors, never a crash; nothing half-delivered."""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from harness import launch_server, wait_until


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A server that gives up on a silent client after one second."""
    proc = launch_server(tmp_path_factory.mktemp("impatient") / "data", KANTOOR_LIMITS_SMTP_TIMEOUT_SECONDS="1")
    try:
        yield proc
    finally:
        proc.stop()


def _dialogue(sock: socket.socket, reader: Any, lines: list[bytes]) -> bytes:
    """Send each command, read its (possibly multi-line) reply; returns the last reply line."""
    reply = b""
    for line in lines:
        sock.sendall(line + b"\r\n")
        while (reply := reader.readline())[3:4] == b"-":
            pass
    return reply


def test_garbage_command_is_500_and_the_session_continues(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        code, text = client.docmd("XYZZY", "plugh")
        assert code == 500 and text.startswith(b"5.5.1")
        assert client.noop()[0] == 250
        code, _ = client.docmd("\x01\x02garbage")
        assert code in (500, 502)
        assert client.noop()[0] == 250


def test_commands_out_of_sequence_are_503_5_5_1_rfc5321_section_4_1_4(server, mail) -> None:  # type: ignore[no-untyped-def]
    with smtplib.SMTP(server.host, server.ports["smtp"], timeout=30) as client:
        code, text = client.docmd("MAIL", "FROM:<a@example.org>")  # before EHLO
        assert (code, text[:6]) == (503, b"5.5.1 "), text
        client.ehlo("mx.example.org")
        for command, arg in (("RCPT", f"TO:<{server.admin_login}>"),  # before MAIL
                             ("DATA", "")):  # before RCPT
            code, text = client.docmd(command, arg)
            assert (code, text[:6]) == (503, b"5.5.1 "), (command, text)
        client.mail("a@example.org")
        code, text = client.docmd("DATA")  # MAIL but no accepted recipient
        assert (code, text[:6]) == (503, b"5.5.1 "), text
        code, text = client.docmd("MAIL", "FROM:<b@example.org>")  # nested MAIL
        assert (code, text[:6]) == (503, b"5.5.1 "), text


def test_malformed_addresses_are_501_rfc5321_section_4_1_2(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, _ = server.make_user()
    with mail.mx() as client:
        for sender in ("<a@@example.org>", "<no-domain>", "<a@example..org>", "<a\"b@example.org>"):
            code, text = client.docmd("MAIL", f"FROM:{sender}")
            assert (code, text[:6]) == (501, b"5.1.7 "), (sender, text)  # RFC 3463: sender address syntax
        assert client.mail("a@example.org")[0] == 250
        for recipient in ("<user>", "<@localhost>", "<a@b..example>", "<a@-bad-.example>", f"<{'x' * 65}@localhost>",
                          "<a@[300.1.1.1]>", "<a(comment)@localhost>"):
            code, text = client.docmd("RCPT", f"TO:{recipient}")
            assert (code, text[:6]) == (501, b"5.1.3 "), (recipient, text)  # RFC 3463: destination syntax
        # RFC 5321 section 4.5.1: "postmaster" alone is the one recipient without a domain.
        # Dots in a row are outside the grammar but handed out in practice: taken (like other MTAs do).
        assert client.docmd("RCPT", "TO:<first..last@example.org>")[0] == 550  # well-formed, just not ours
        assert client.docmd("RCPT", "TO:<Postmaster>")[0] == 250
        assert client.docmd("RCPT", f"TO:<{login}>")[0] == 250
        assert client.noop()[0] == 250


def test_over_long_text_line_is_500_and_nothing_is_delivered_rfc5321_section_4_5_3_1_6(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    with mail.mx() as client:
        client.mail("a@example.org")
        client.rcpt(login)
        assert client.docmd("DATA")[0] == 354
        client.send(b"Subject: long\r\n\r\n" + b"x" * 1200 + b"\r\nmore\r\n.\r\n")
        code, text = client.getreply()
        assert code == 500 and text[:6] == b"5.5.2 " and b"Line too long" in text
        assert client.noop()[0] == 250
    assert mail.inbox(login, password) == []


def test_bare_lf_in_data_is_refused_whole_rfc5321_section_2_3_8(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    with mail.mx() as client:
        client.mail("a@example.org")
        client.rcpt(login)
        assert client.docmd("DATA")[0] == 354
        # An "SMTP smuggling" attempt: a bare-LF end of data followed by a second transaction.
        client.send(b"Subject: first\r\n\r\nhello\n.\nMAIL FROM:<ceo@localhost>\nRCPT TO:<" + login.encode()
                    + b">\nDATA\nSubject: smuggled\n\nwire money\r\n.\r\n")
        code, text = client.getreply()
        assert code == 554 and text[:6] == b"5.5.2 " and b"bare CR or LF" in text, text
        assert client.noop()[0] == 250
    assert mail.inbox(login, password) == []


def test_a_nul_in_data_is_refused_whole_rfc6152_rfc3501_4_3(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    submitter, submit_password = server.make_user()
    sender = f"{mail.unique('nul')}@example.org"
    with mail.mx() as client:
        client.mail(sender)
        client.rcpt(login)
        assert client.docmd("DATA")[0] == 354
        client.send(b"Subject: nul\r\n\r\nbefore\x00after\r\n.\r\n")
        code, text = client.getreply()
        assert code == 554 and text[:6] == b"5.6.0 " and b"NUL" in text, text
        assert client.noop()[0] == 250
        # The refusal is logged with the transaction's id, as a delivery is.
        assert wait_until(lambda: any(re.search(rf" id [0-9A-F]{{15}} from {sender}: refused, 554 5\.6\.0 ", line)
                                      for line in server.output))
        # The session goes on: the next message is delivered.
        assert client.sendmail("a@example.org", [login], b"Subject: clean\r\n\r\nfine\r\n") == {}
    with mail.submissions() as client:  # and from a logged-in user
        client.login(submitter, submit_password)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(submitter, [login], f"From: {submitter}\r\nSubject: x\r\n\r\na\x00b\r\n".encode())
        assert refused.value.smtp_code == 554 and refused.value.smtp_error[:6] == b"5.6.0 "
    assert mail.subjects(mail.inbox(login, password)) == ["clean"]


def test_over_long_command_line_is_500_5_5_2(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        code, text = client.docmd("NOOP", "x" * 2000)
        assert (code, text[:5]) == (500, b"5.5.2")
        assert client.noop()[0] == 250


def test_every_reply_has_an_enhanced_status_code(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        for command in ("NOOP", "RSET", "VRFY postmaster", "HELP", "EXPN list", "DATA", "STARTTLS now"):
            name, _, arg = command.partition(" ")
            code, text = client.docmd(name, arg)
            assert text[:1] in (b"2", b"4", b"5") and text[1:2] == b".", (command, code, text)


def test_connection_dropped_during_data_delivers_nothing(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    subject = mail.unique("half-")
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        for line in (b"EHLO mx.example.org", b"MAIL FROM:<a@example.org>", f"RCPT TO:<{login}>".encode(), b"DATA"):
            sock.sendall(line + b"\r\n")
            while (reply := reader.readline())[3:4] == b"-":
                pass
        assert reply.startswith(b"354")
        sock.sendall(mail.compose(subject))  # no terminating "." line
    time.sleep(0.5)
    whole = mail.unique("whole-")
    with mail.mx() as client:  # the server is fine
        assert client.sendmail("a@example.org", [login], mail.compose(whole)) == {}
    assert mail.subjects(mail.inbox(login, password)) == [whole]


def test_client_stalling_mid_data_gets_421_and_nothing_is_delivered_rfc5321_section_4_5_3_2_6(  # type: ignore[no-untyped-def]
        impatient, mail_for) -> None:
    srv = impatient
    mail = mail_for(srv)
    login, password = srv.make_user()
    with socket.create_connection((srv.host, srv.ports["smtp"]), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        reply = _dialogue(sock, reader, [b"EHLO mx.example.org", b"MAIL FROM:<a@example.org>",
                                         f"RCPT TO:<{login}>".encode(), b"DATA"])
        assert reply.startswith(b"354")
        sock.sendall(b"Subject: stalled\r\n\r\nthe first half")  # … and then nothing
        assert reader.readline().startswith(b"421 4.4.2 ")
        assert reader.readline() == b""  # closed
    assert mail.inbox(login, password) == []


def test_idle_connection_gets_421_but_slow_data_is_not_cut_off(impatient, mail_for) -> None:  # type: ignore[no-untyped-def]
    srv = impatient
    with socket.create_connection((srv.host, srv.ports["smtp"]), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        assert reader.readline().startswith(b"421 4.4.2 ")  # nothing sent for a second
        assert reader.readline() == b""  # closed
    mail = mail_for(srv)
    login, password = srv.make_user()
    with mail.mx() as client:
        client.mail("a@example.org")
        client.rcpt(login)
        assert client.docmd("DATA")[0] == 354
        for n in range(5):  # 2.5 s in all, but never a second without data (RFC 5321 4.5.3.2.6)
            client.send(f"Subject: slow\r\nX-Line: {n}\r\n".encode() if n == 0 else f"X-Line: {n}\r\n".encode())
            time.sleep(0.5)
        client.send(b"\r\nbody\r\n.\r\n")
        assert client.getreply()[0] == 250
    assert mail.subjects(mail.inbox(login, password)) == ["slow"]


def test_a_command_line_dribbled_byte_by_byte_still_times_out_rfc5321_section_4_5_3_2_7(impatient) -> None:  # type: ignore[no-untyped-def]
    # Unlike a DATA block, a command has to arrive whole within the timeout: one byte every 0.3 s must not keep
    # the session (and its descriptor) for ever.
    with socket.create_connection((impatient.host, impatient.ports["smtp"]), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the server may have closed by the time a byte is sent
            for byte in b"HELO mx.example.org":
                sock.sendall(bytes([byte]))
                time.sleep(0.3)
        assert reader.readline().startswith(b"421 4.4.2 ")
        assert time.monotonic() - started < 3


def test_data_without_mail_says_mail_is_needed_503(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        code, text = client.docmd("DATA")
        assert code == 503 and b"MAIL" in text, text
        assert client.mail("a@example.org")[0] == 250
        code, text = client.docmd("RCPT", "TO:<>")
        assert (code, text) == (501, b"5.1.3 The null path <> is no recipient")


def test_failed_tls_handshake_does_not_hurt_the_listener(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        assert client.docmd("STARTTLS")[0] == 220
        client.sock.sendall(b"this is not a TLS ClientHello\r\n" * 10)
        try:
            client.sock.recv(1024)
        except OSError:
            pass
    with mail.mx() as client:
        assert client.noop()[0] == 250


def test_address_that_is_not_utf8_is_refused_without_an_error(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        client.send(b"MAIL FROM:<\xff\xfe@example.org> SMTPUTF8\r\n")
        code, text = client.getreply()
        assert (code, text[:5]) == (553, b"5.6.7")
        assert client.mail("a@example.org", ["SMTPUTF8"])[0] == 250
        client.send(b"RCPT TO:<bad\xc3@localhost>\r\n")
        code, text = client.getreply()
        assert (code, text[:5]) == (553, b"5.6.7")
        assert client.noop()[0] == 250
