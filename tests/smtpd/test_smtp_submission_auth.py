"""Submission (RFC 6409) with AUTH (RFC 4954), STARTTLS (RFC 3207) and implicit TLS (RFC 8314)."""

from __future__ import annotations

import re
import smtplib
import time

import pytest


def _headers(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def test_auth_plain_in_plain_text_on_loopback_then_local_delivery(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    subject = mail.unique("submitted-")
    with mail.submission() as client:
        assert client.has_extn("auth")  # loopback + auth.allow_plaintext_on_loopback
        code, text = client.login(ann, ann_pw)  # smtplib picks PLAIN
        assert (code, text[:5]) == (235, b"2.7.0")
        assert client.sendmail(ann, [bob], mail.compose(subject, sender=ann)) == {}
    assert re.search(rb"with ESMTPA id [0-9A-F]{15}\r\n", _headers(mail.received(bob, bob_pw, subject)))


def test_auth_login_after_starttls(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    subject = mail.unique("starttls-")
    with mail.submission() as client:
        client.starttls(context=mail.tls_context())
        client.ehlo("laptop.example.org")
        client.user, client.password = ann, ann_pw
        assert client.auth("LOGIN", client.auth_login, initial_response_ok=False)[0] == 235
        assert client.sendmail(ann, [bob], mail.compose(subject, sender=ann)) == {}
    _assert_tls_trace(_headers(mail.received(bob, bob_pw, subject)))


def _assert_tls_trace(headers: bytes) -> None:
    """Received: says ESMTPSA (RFC 3848) and which TLS: a comment, and RFC 8314 section 4.3's tls clause."""
    assert re.search(rb"\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)\r\n", headers), headers
    assert re.search(rb"with ESMTPSA id [0-9A-F]{15}\r\n\tfor <[^>]+>( tls TLS_[A-Z0-9_]+)?; ", headers), headers
    assert b"> tls TLS_" in headers or b"TLSv1.2" in headers, headers  # 1.3 suites are IANA names


def test_implicit_tls_submissions_port(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    subject = mail.unique("smtps-")
    with mail.submissions() as client:
        assert not client.has_extn("starttls")  # already encrypted
        assert client.has_extn("auth")
        client.login(ann, ann_pw)
        assert client.sendmail(ann, [bob], mail.compose(subject, sender=ann)) == {}
    _assert_tls_trace(_headers(mail.received(bob, bob_pw, subject)))


def test_mail_before_auth_is_530(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.submission() as client:
        code, text = client.mail("someone@example.org")
        assert (code, text[:5]) == (530, b"5.7.0")


def test_wrong_password_is_535_after_a_delay_and_the_session_goes_on(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    with mail.submission() as client:
        started = time.monotonic()
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            client.login(login, "not the password")
        assert failed.value.smtp_code == 535
        assert failed.value.smtp_error.startswith(b"5.7.8")
        assert time.monotonic() - started >= 0.09  # the test server's failure delay is 0.1 s
        assert client.login(login, password)[0] == 235


def test_spoofed_sender_is_refused(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, _) = server.make_user(), server.make_user()
    with mail.submission() as client:
        client.login(ann, ann_pw)
        for spoofed in (bob, "ceo@example.com"):
            code, text = client.docmd("MAIL", f"FROM:<{spoofed}>")
            assert (code, text[:5]) == (550, b"5.7.1"), spoofed
        assert client.mail(ann.upper())[0] == 250  # addresses are case-insensitive


def test_sending_from_an_alias_is_allowed(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    alias = f"{mail.unique('sales')}@localhost"
    mail.add_alias(ann, alias)
    subject = mail.unique("from-alias-")
    with mail.submission() as client:
        client.login(ann, ann_pw)
        assert client.sendmail(alias, [bob], mail.compose(subject, sender=alias)) == {}
    assert mail.received(bob, bob_pw, subject)


def test_sending_from_a_sub_address_of_the_own_address_or_alias_is_allowed(server, mail) -> None:  # type: ignore[no-untyped-def]
    # Mail for ann+tag@ reaches ann, so ann may send as it (a reply from the address a list knows); another
    # user's sub-address stays refused.
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    alias = f"{mail.unique('team')}@localhost"
    mail.add_alias(ann, alias)
    for sender in (ann.replace("@", "+lists@"), alias.replace("@", "+x@")):
        subject = mail.unique("from-tag-")
        with mail.submission() as client:
            client.login(ann, ann_pw)
            assert client.sendmail(sender, [bob], mail.compose(subject, sender=sender)) == {}
        assert mail.received(bob, bob_pw, subject)
    with mail.submission() as client:
        client.login(ann, ann_pw)
        code, text = client.docmd("MAIL", f"FROM:<{bob.replace('@', '+x@')}>")
        assert (code, text[:5]) == (550, b"5.7.1")
        client.rset()
        client.mail(ann)
        client.rcpt(bob)
        code, text = client.data(mail.compose(mail.unique("forged-"), sender=bob.replace("@", "+x@")))
        assert (code, text[:5]) == (550, b"5.7.1")


def test_plan_without_smtp_cannot_authenticate(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user(plan="free")  # the free plan has no SMTP access
    with mail.submission() as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(login, password)
    assert refused.value.smtp_code == 535
    assert b"plan" in refused.value.smtp_error


def test_auth_needs_tls_when_plain_text_is_not_allowed_on_loopback(start_server, mail_for) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(KANTOOR_AUTH_ALLOW_PLAINTEXT_ON_LOOPBACK="false")
    mail = mail_for(srv)
    login, password = srv.make_user()
    with mail.submission() as client:
        assert not client.has_extn("auth")
        code, text = client.docmd("AUTH", "PLAIN")
        assert (code, text[:6]) == (538, b"5.7.11")
        client.starttls(context=mail.tls_context())
        client.ehlo("laptop.example.org")
        assert client.has_extn("auth")
        assert client.login(login, password)[0] == 235


def test_repeated_failures_are_throttled_with_454(start_server, mail_for) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(KANTOOR_AUTH_MAX_FAILURES="2")
    mail = mail_for(srv)
    login, password = srv.make_user()
    with mail.submission() as client:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login(login, "wrong")
        # Even the right password is refused now, with a temporary code (RFC 4954 section 6).
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(login, password)
    assert refused.value.smtp_code == 454
    assert refused.value.smtp_error.startswith(b"4.7.0")


def test_plain_authorization_identity_must_be_empty_or_the_login_rfc4616_section_2(server, mail) -> None:  # type: ignore[no-untyped-def]
    # RFC 4616: a client asking to act as someone else must be refused, not logged in as itself.
    import base64

    (ann, ann_pw), (bob, _) = server.make_user(), server.make_user()

    def plain(authzid: str) -> str:
        return base64.b64encode(f"{authzid}\0{ann}\0{ann_pw}".encode()).decode()

    with mail.submission() as client:
        code, text = client.docmd("AUTH", f"PLAIN {plain(bob)}")
        assert (code, text[:6]) == (535, b"5.7.8 "), text
        code, _ = client.docmd("AUTH", "PLAIN")  # the same, with the response after a 334 challenge
        assert code == 334
        code, text = client.docmd(plain(bob))
        assert (code, text[:6]) == (535, b"5.7.8 "), text
        code, text = client.docmd("AUTH", f"PLAIN {plain(ann.upper())}")  # its own login: fine
        assert code == 235, text


def test_login_prompts_and_an_empty_plain_initial_response_rfc4954_section_4(server, mail) -> None:  # type: ignore[no-untyped-def]
    import base64

    login, password = server.make_user()
    with mail.submission() as client:
        code, text = client.docmd("AUTH", "PLAIN =")  # "=": an empty initial response, not bad base64
        assert (code, text[:6]) == (501, b"5.5.2 ") and b"base64" not in text, text
        code, text = client.docmd("AUTH", "LOGIN")
        assert (code, base64.b64decode(text)) == (334, b"Username:")
        code, text = client.docmd(base64.b64encode(login.encode()).decode())
        assert (code, base64.b64decode(text)) == (334, b"Password:")
        assert client.docmd(base64.b64encode(password.encode()).decode())[0] == 235
