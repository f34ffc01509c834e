"""Mail loops, RFC 5321 section 6.3: a message with more Received: fields than the limit (100 by
default, ``limits.max_received_headers``) is refused at the end of DATA with 554 5.4.6 and nothing
of it is delivered or queued; one with exactly the limit is delivered. The MX side of loop
prevention (section 5.1: an MX host that is this server) is in test_smtp_dns_routing.py."""

from __future__ import annotations

import smtplib

import pytest

from kantoor.smtpd.mail_loop import received_count


def _with_hops(hops: int, subject: str, sender: str = "someone@example.org") -> bytes:
    trace = b"".join(b"Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d])\r\n"
                     b"\tby mx%d.example.org; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (n, n, n % 250 + 1, n)
                     for n in range(hops))
    return trace + (f"From: {sender}\r\nTo: you\r\nSubject: {subject}\r\n\r\nAround and around.\r\n").encode()


def test_received_fields_are_counted_in_the_header_section_only() -> None:
    header = (b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
              b"received :from c\r\n\tby d; Mon, 1 Jan 2024 00:00:00 +0000\r\n"  # any case, blank before ':'
              b"RECEIVED: x\r\n"
              b"X-Received: not a trace field\r\n"
              b"Subject: Received: is in this value\r\n"
              b" Received: a folded continuation, not a field\r\n")
    body = b"Received: a body line is not a header field\r\n"
    assert received_count(header + b"\r\n" + body) == 3
    assert received_count(header) == 3  # no body at all
    assert received_count(b"\r\nReceived: after an empty header section\r\n") == 0


def test_more_received_fields_than_the_limit_is_554_5_4_6_and_nothing_is_delivered_rfc5321_section_6_3(  # type: ignore[no-untyped-def]
        server, mail) -> None:
    login, password = server.make_user()
    looping = mail.unique("loop-")
    with mail.mx() as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("someone@example.org", [login], _with_hops(101, looping))
        assert refused.value.smtp_code == 554 and refused.value.smtp_error.startswith(b"5.4.6 "), refused.value
        assert b"101 Received" in refused.value.smtp_error
        assert client.noop()[0] == 250  # the session goes on
        at_limit = mail.unique("hops-")
        assert client.sendmail("someone@example.org", [login], _with_hops(100, at_limit)) == {}
    subjects = mail.subjects(mail.inbox(login, password))
    assert at_limit in subjects and looping not in subjects


def test_a_looping_message_is_not_queued_from_submission_either_rfc5321_section_6_3(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    subject = mail.unique("subloop-")
    remote = f"{subject}@elsewhere.example"
    with mail.submission() as client:
        client.login(login, password)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(login, [login, remote], _with_hops(150, subject, sender=login))
        assert refused.value.smtp_code == 554 and refused.value.smtp_error.startswith(b"5.4.6 "), refused.value
    # Nothing queued for the remote recipient …
    assert not [m for m in server.core().store.list_outbound(state=None) if remote in m.recipients]
    assert subject not in mail.subjects(mail.inbox(login, password))  # nor delivered to the local one
