"""Session rules of the SMTP server that a mature MTA enforces beyond the happy path: no AUTH inside a mail
transaction (RFC 4954 section 4), no second STARTTLS (RFC 3207 section 4.2), 214 for HELP (RFC 5321
4.1.1.8), 421 when the server ends a session (RFC 5321 3.8), printable reply text (RFC 5321 4.2), and
Postfix-style error limits against address harvesting."""

from __future__ import annotations

import base64
import smtplib
import socket
import time
from typing import Any

import pytest


def _after_ehlo(sock: socket.socket) -> Any:
    """The socket's reader once the greeting and an EHLO's (multi-line) reply are read."""
    reader = sock.makefile("rb")
    reader.readline()
    sock.sendall(b"EHLO mx.example.org\r\n")
    while reader.readline()[3:4] == b"-":
        pass
    return reader


def _plain(login: str, password: str) -> str:
    return base64.b64encode(f"\0{login}\0{password}".encode()).decode()


def test_auth_inside_a_mail_transaction_is_503_rfc4954_section_4(server, mail) -> None:  # type: ignore[no-untyped-def]
    # Otherwise a user could name someone else at MAIL (unchecked before the login) and then log in.
    (ann, ann_pw), (bob, _) = server.make_user(), server.make_user()
    with mail.mx() as client:
        assert client.mail(bob)[0] == 250
        code, text = client.docmd("AUTH", f"PLAIN {_plain(ann, ann_pw)}")
        assert (code, text[:6]) == (503, b"5.5.1 "), text
        assert client.rset()[0] == 250  # the transaction ended: now a login is fine
        assert client.docmd("AUTH", f"PLAIN {_plain(ann, ann_pw)}")[0] == 235
        code, text = client.docmd("MAIL", f"FROM:<{bob}>")  # and the sender is checked for the login
        assert (code, text[:6]) == (550, b"5.7.1 "), text


def test_starttls_inside_tls_is_503_and_the_session_goes_on_rfc3207_section_4_2(server, mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        client.starttls(context=mail.tls_context())
        client.ehlo("mx.example.org")
        code, text = client.docmd("STARTTLS")
        assert (code, text[:6]) == (503, b"5.5.1 "), text
        assert client.noop()[0] == 250


def test_help_is_214_and_an_unknown_topic_504_rfc5321_section_4_1_1_8(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        code, text = client.docmd("HELP")
        assert code == 214 and b"MAIL" in text and b"RCPT" in text and b"DATA" in text, text
        code, text = client.docmd("HELP", "mail")
        assert code == 214 and b"MAIL FROM" in text, text
        assert client.docmd("HELP", "XYZZY")[0] == 504


def test_replies_never_echo_control_characters_rfc5321_section_4_2(server) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection((server.host, server.ports["smtp"]), timeout=10) as sock:
        reader = _after_ehlo(sock)
        sock.sendall(b"NO\x00OP\x1b[2J\r\n")
        reply = reader.readline()
        assert reply.startswith(b"500 ") and b"NO?OP?[2J" in reply, reply
        assert not any(byte < 0x20 for byte in reply[:-2]), reply


def test_too_many_unknown_commands_end_the_session_with_421_rfc5321_section_3_8(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        replies = [client.docmd("XYZZY") for _ in range(5)]
    assert [code for code, _ in replies[:4]] == [500] * 4
    assert replies[4][0] == 421 and replies[4][1].startswith(b"4.7.0 "), replies[4]


@pytest.fixture
def strict(start_server: Any) -> Any:
    return start_server(KANTOOR_LIMITS_SMTP_SOFT_ERROR_LIMIT="3", KANTOOR_LIMITS_SMTP_HARD_ERROR_LIMIT="6",
                        KANTOOR_LIMITS_SMTP_ERROR_DELAY_SECONDS="0.3", KANTOOR_LIMITS_SMTP_JUNK_COMMAND_LIMIT="5")


def test_errors_past_the_soft_limit_are_slowed_and_the_hard_limit_ends_the_session(strict, mail_for) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(strict)
    login, password = strict.make_user()
    with mail.mx() as client:
        client.mail("someone@example.org")
        started = time.monotonic()
        for n in range(3):  # up to the soft limit: no pause
            assert client.rcpt(f"nobody{n}@localhost")[0] == 550
        fast = time.monotonic() - started
        for n in range(3, 5):  # past it: a pause after each
            assert client.rcpt(f"nobody{n}@localhost")[0] == 550
        assert time.monotonic() - started >= fast + 0.6
        # A delivered message starts the count again.
        assert client.rcpt(login)[0] == 250
        assert client.data(mail.compose(mail.unique("counted-")))[0] == 250
        client.mail("someone@example.org")
        for n in range(5):
            assert client.rcpt(f"again{n}@localhost")[0] == 550
        code, text = client.rcpt("sixth@localhost")  # the hard limit: this error, then 421 and the end
        assert code == 550, text
        code, text = client.noop()  # what comes next is the 421 the server closed with
        assert (code, text[:6]) == (421, b"4.7.0 "), text
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_commands_that_move_no_mail_count_as_errors_past_the_junk_limit(strict) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection((strict.host, strict.ports["smtp"]), timeout=10) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"HELO mx.example.org\r\n" + b"NOOP\r\n" * 20)
        replies = [reader.readline() for _ in range(20)]
    codes = [reply[:3] for reply in replies if reply]
    # HELO and four NOOPs are within the limit of 5; the next five count as errors (answered), and the one
    # after them reaches the hard limit (6): the session ends with 421 instead of its reply.
    assert codes == [b"250"] * 10 + [b"421"], codes


def test_pipelined_errors_reach_the_hard_limit_too(strict) -> None:  # type: ignore[no-untyped-def]
    # Forty guesses in one write must not get past the limit that ends a session guessing one at a time.
    with socket.create_connection((strict.host, strict.ports["smtp"]), timeout=10) as sock:
        reader = _after_ehlo(sock)
        batch = b"MAIL FROM:<someone@example.org>\r\n" + b"".join(
            f"RCPT TO:<nobody{n}@localhost>\r\n".encode() for n in range(40)) + b"NOOP\r\n"
        sock.sendall(batch)
        replies = []
        while line := reader.readline():
            replies.append(line[:3])
    assert replies == [b"250"] + [b"550"] * 6 + [b"421"], replies


@pytest.mark.parametrize("name", [
    "a\rX-Injected: yes",  # a bare CR: a header field of its own
    "foo bar",  # blanks: clauses of their own in Received:
    "a; by evil.example with ESMTP; Mon, 1 Jan 2001 00:00:00 +0000",
    "h=1 smtp.mailfrom=forged@paypal.example",  # a property in Authentication-Results:
    "a\x1b[31mred",
    '"quoted"',
    "\u00e9" * 70 + ".example",  # a label too long for its A-label (IDNA 2008)
])
def test_ehlo_and_helo_names_must_be_a_domain_or_address_literal_501_rfc5321_section_4_1_1_1(server, name) -> None:  # type: ignore[no-untyped-def]
    for verb in ("EHLO", "HELO"):
        with socket.create_connection((server.host, server.ports["smtp"]), timeout=10) as sock:
            reader = sock.makefile("rb")
            reader.readline()
            sock.sendall(f"{verb} {name}\r\n".encode())
            reply = reader.readline()
            assert reply.startswith(b"501 5.5.4 "), (verb, reply)
            sock.sendall(b"MAIL FROM:<a@example.org>\r\n")  # no greeting took place
            assert reader.readline().startswith(b"503 "), verb


def test_lenient_helo_names_are_taken_and_a_u_label_goes_into_the_header_as_a_labels(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    for name, shown in (("MYPC", b"MYPC"), ("my_pc.lan", b"my_pc.lan"), ("[127.0.0.1]", b"[127.0.0.1]"),
                        ("[IPv6:::1]", b"[IPv6:::1]"), ("\u00fcber.example", b"xn--ber-goa.example"),
                        ("fa\u00df.example", b"xn--fa-hia.example")):  # IDNA 2008: not "fass"
        subject = mail.unique("helo-")
        client = smtplib.SMTP(server.host, server.ports["smtp"], local_hostname=name, timeout=10)
        client.command_encoding = "utf-8"  # a U-label EHLO (RFC 6531 section 3.7.1)
        with client:
            assert client.sendmail("a@example.org", [login], mail.compose(subject)) == {}
        raw = mail.received(login, password, subject)
        assert b"Received: from " + shown + b" " in raw and b"smtp.helo=" + shown in raw.replace(b'"', b""), name
        assert raw.isascii(), name
