"""The header of a submitted message (RFC 6409 section 8, RFC 5322 sections 3.6.2-3.6.4).

Every author address (From:, Sender:) must be the account's own, not only the envelope sender
(550 5.7.1 at the end of DATA, nothing delivered or queued); a missing From, Date or Message-ID
is added and a Bcc removed; mail received as MX is left as it came."""

from __future__ import annotations

import datetime as dt
import email.utils
import smtplib
from email import message_from_bytes

import pytest

from kantoor.smtpd.authorship import authors
from kantoor.smtpd.header_completion import completed, without_bcc


def _message(fields: str, subject: str) -> bytes:
    return f"{fields}To: you@example.org\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()


@pytest.mark.parametrize("fields", [
    "From: someone.else@example.org\r\n",
    "From: \"Ann\" <ANN>, boss@example.org\r\n",  # one of two is not hers
    "From: ANN\r\nSender: secretary@example.org\r\n",
    "From: undisclosed:;\r\n",  # a group is no author
    "From: not an address\r\n",
    "From:\r\n",  # no author at all
    "From: ANN\r\nResent-From: ceo@bank.example\r\n",  # the author of a resent message (RFC 5322 3.6.6)
])
def test_author_fields_must_be_the_accounts_own_550_5_7_1(server, mail, fields) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    subject = mail.unique("forged-")
    with mail.submission() as client:
        client.login(ann, ann_pw)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(ann, [bob], _message(fields.replace("ANN", ann), subject))
        assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1 "), refused.value
        assert client.noop()[0] == 250
    assert subject not in mail.subjects(mail.inbox(bob, bob_pw))


def test_own_addresses_and_aliases_may_be_authors_whatever_the_display_name(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    alias = f"{mail.unique('team')}@localhost"
    mail.add_alias(ann, alias)
    subjects = []
    with mail.submission() as client:
        client.login(ann, ann_pw)
        for fields in (f"From: \"ceo@bank.example\" <{ann.upper()}>\r\n",  # the display name is not checked
                       f"From: =?utf-8?q?Ann_M=C3=BCller?= <{alias}>\r\nSender: {ann}\r\n",
                       f"From: {ann}, {alias}\r\nSender: {ann}\r\n"):
            subjects.append(mail.unique("own-"))
            assert client.sendmail(ann, [bob], _message(fields, subjects[-1])) == {}
    received = mail.subjects(mail.inbox(bob, bob_pw))
    assert all(subject in received for subject in subjects)


def test_null_sender_is_allowed_for_notifications_from_the_accounts_own_address_rfc8098_section_2_1(  # type: ignore[no-untyped-def]
        server, mail) -> None:
    # Read receipts (MDNs) are sent with an empty return path; the author check still holds them to the account.
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    receipt = mail.unique("mdn-")
    with mail.submission() as client:
        client.login(ann, ann_pw)
        assert client.sendmail("", [bob], _message(f"From: {ann}\r\n", receipt)) == {}
        for fields in ("From: someone.else@example.org\r\n", ""):  # a foreign author, or none at all
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("", [bob], _message(fields, mail.unique("mdn-")))
            assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1 "), refused.value
    assert mail.received(bob, bob_pw, receipt)


def test_header_lines_that_are_not_fields_are_refused_554_5_6_0(server, mail) -> None:  # type: ignore[no-untyped-def]
    # Read as a From field by some readers and skipped by others: an author check must not depend on which.
    (ann, ann_pw), (bob, _) = server.make_user(), server.make_user()
    with mail.submission() as client:
        client.login(ann, ann_pw)
        for odd in (f"From: {ann}\r\nFrom : ceo@bank.example\r\n", "From\t: ceo@bank.example\r\n",
                    "X-Test: 1\r\nthis line has no colon\r\nFrom: ceo@bank.example\r\n",
                    "From\x00: ceo@bank.example\r\n", " From: ceo@bank.example\r\n"):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail(ann, [bob], _message(odd, mail.unique("odd-")))
            assert refused.value.smtp_code == 554 and refused.value.smtp_error.startswith(b"5.6.0 "), odd


def test_a_disabled_account_cannot_send_from_a_session_opened_before(server, mail) -> None:  # type: ignore[no-untyped-def]
    ann, ann_pw = server.make_user()
    with mail.submission() as client:
        client.login(ann, ann_pw)
        server.cli("user", "disable", ann)
        code, text = client.docmd("MAIL", f"FROM:<{ann}>")
        assert (code, text[:6]) == (550, b"5.7.1 ") and b"disabled" in text, text


def test_missing_from_date_and_message_id_are_added_rfc6409_section_8(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    bare, kept = mail.unique("bare-"), mail.unique("kept-")
    with mail.submission() as client:
        client.login(ann, ann_pw)
        assert client.sendmail(ann, [bob], _message("", bare)) == {}
        own = f"From: {ann}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0100\r\nMessage-ID: <mine@laptop.example>\r\n"
        assert client.sendmail(ann, [bob], _message(own, kept)) == {}
    completed_message = message_from_bytes(mail.received(bob, bob_pw, bare))
    assert email.utils.parseaddr(completed_message["From"])[1] == ann
    sent = email.utils.parsedate_to_datetime(completed_message["Date"])
    assert abs(sent - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    assert completed_message["Message-ID"].endswith("@localhost>")  # server.hostname
    untouched = message_from_bytes(mail.received(bob, bob_pw, kept))
    assert untouched.get_all("Message-ID") == ["<mine@laptop.example>"]
    assert untouched.get_all("Date") == ["Mon, 1 Jan 2024 10:00:00 +0100"]


def test_bcc_is_removed_from_every_copy_rfc5322_section_3_6_3(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, bob_pw), (eve, eve_pw) = server.make_user(), server.make_user(), server.make_user()
    subject = mail.unique("blind-")
    fields = f"From: {ann}\r\nBcc: {eve},\r\n secret@example.org\r\nbcc: {eve}\r\n"
    with mail.submission() as client:
        client.login(ann, ann_pw)
        assert client.sendmail(ann, [bob, eve], _message(fields, subject)) == {}
    for login, password in ((bob, bob_pw), (eve, eve_pw)):
        raw = mail.received(login, password, subject)
        assert message_from_bytes(raw).get_all("Bcc") is None and b"secret@example.org" not in raw, login


def test_mail_received_as_mx_is_not_completed_rfc5321_section_6_4(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    subject = mail.unique("mx-")
    with mail.mx() as client:
        assert client.sendmail("someone@example.org", [login], _message("", subject)) == {}
    received = message_from_bytes(mail.received(login, password, subject))
    assert received["Message-ID"] is None and received["Date"] is None and received["From"] is None


def test_completion_goes_at_the_end_of_the_header_section() -> None:
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    out = completed(b"Subject: x\r\n\r\nbody\r\n\r\nmore\r\n", "mx.example.org", "a@example.org", now)
    head, _, body = out.partition(b"\r\n\r\n")
    assert body == b"body\r\n\r\nmore\r\n"
    assert head.split(b"\r\n")[:3] == [b"Subject: x", b"From: <a@example.org>",
                                        b"Date: Fri, 27 Nov 2026 12:00:00 +0000"]
    assert head.split(b"\r\n")[3].startswith(b"Message-ID: <") and head.endswith(b"@mx.example.org>")
    assert completed(b"Subject: only a header\r\n", "h", "a@b.c", now).count(b"\r\n") == 4  # no body: all fields
    complete = b"from: a@b.c\r\nDATE: Fri, 27 Nov 2026 12:00:00 +0000\r\nMessage-Id: <x@y>\r\n\r\nbody\r\n"
    assert completed(complete, "h", "a@b.c", now) is complete


def test_only_bcc_fields_and_their_continuation_lines_are_removed() -> None:
    message = (b"From: a@b.c\r\nBcc: x@y.z,\r\n\tw@y.z\r\nSubject: Bcc: in a subject\r\nResent-Bcc: v@y.z\r\n"
               b"X-Bcc-Note: kept\r\n folded\r\n\r\nBcc: in the body\r\n")  # Resent-Bcc: RFC 5322 3.6.6
    assert without_bcc(message) == (b"From: a@b.c\r\nSubject: Bcc: in a subject\r\nX-Bcc-Note: kept\r\n folded\r\n"
                                    b"\r\nBcc: in the body\r\n")
    plain = b"From: a@b.c\r\n\r\nBcc: in the body\r\n"
    assert without_bcc(plain) is plain


def test_authors_are_read_from_from_and_sender_only() -> None:
    found = authors(b"From: =?utf-8?q?J=C3=BCrgen?= <J@X.example>, bob@y.example\r\nSender: j@x.example\r\n"
                    b"Reply-To: other@z.example\r\n\r\nFrom: body@not.a.header\r\n")
    assert (found.addresses, found.unreadable) == (["j@x.example", "bob@y.example"], "")
    assert authors("From: Zoë <zoë@bücher.example>\r\n\r\n".encode()).addresses == ["zoë@bücher.example"]
    assert authors(b"From: <>\r\n\r\n").unreadable == "From"
