"""MX (RFC 5321): mail for local recipients lands in their INBOX; nothing else is accepted."""

from __future__ import annotations

import re
import smtplib

import pytest

from tests.harness import wait_until


def _headers(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def test_mail_for_the_administrator_arrives_in_the_inbox_with_trace_headers(server, mail) -> None:  # type: ignore[no-untyped-def]
    subject = mail.unique("to-admin-")
    with mail.mx() as client:
        assert client.sendmail("sender@example.org", [server.admin_login], mail.compose(subject)) == {}
    raw = mail.received(server.admin_login, server.admin_password, subject)
    # RFC 5321 section 4.4: the final delivery adds Return-Path and a Received line on top.
    assert raw.startswith(b"Return-Path: <sender@example.org>\r\nReceived: from mx.example.org ([127.0.0.1])")
    # RFC 5321 section 4.4's clauses in its order: with, id, for.
    found = re.search(rb"\tby [^ ]+ \(Kantoor\) with ESMTP id ([0-9A-F]{15})\r\n\tfor <([^>]+)>; ", _headers(raw))
    assert found and found[2].decode() == server.admin_login, _headers(raw)
    # The id names the delivery's log line (as a Postfix queue id does).
    logged = f" id {found[1].decode()} from sender@example.org:"
    assert wait_until(lambda: any(logged in line for line in server.output))
    assert raw.endswith(b"\r\n\r\nHello.\r\n")


def test_alias_and_plus_tag_reach_the_account_once(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    alias = f"{mail.unique('alias')}@localhost"
    mail.add_alias(login, alias)
    local, domain = login.split("@")
    subject = mail.unique("aliased-")
    with mail.mx() as client:
        refused = client.sendmail("sender@example.org", [alias, f"{local}+news@{domain}", login.upper()],
                                  mail.compose(subject))
    assert refused == {}
    assert mail.subjects(mail.inbox(login, password)).count(subject) == 1


def test_several_local_recipients_each_get_the_message(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, bob_pw) = server.make_user(), server.make_user()
    subject = mail.unique("both-")
    with mail.mx() as client:
        assert client.sendmail("sender@example.org", [ann, bob], mail.compose(subject)) == {}
    assert mail.received(ann, ann_pw, subject)
    assert mail.received(bob, bob_pw, subject)


def test_null_reverse_path_is_accepted_for_bounces(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    subject = mail.unique("bounce-")
    with mail.mx() as client:
        assert client.sendmail("<>", [login], mail.compose(subject, sender="MAILER-DAEMON@example.org")) == {}
    assert mail.received(login, password, subject).startswith(b"Return-Path: <>\r\n")


def test_unknown_recipient_in_a_local_domain_is_550_5_1_1(server, mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        assert client.mail("sender@example.org")[0] == 250
        code, text = client.rcpt(f"{mail.unique('nobody')}@localhost")
        assert (code, text[:5]) == (550, b"5.1.1")
        # The transaction goes on: a valid recipient is still accepted.
        assert client.rcpt(server.admin_login)[0] == 250


def test_relaying_to_another_domain_is_refused_without_auth(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        client.mail("sender@example.org")
        code, text = client.rcpt("someone@example.com")
        assert (code, text[:5]) == (550, b"5.7.1")
        client.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("sender@example.org", ["victim@example.net"], mail.compose("spam"))


def test_disabled_account_receives_nothing(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, _ = server.make_user()
    server.cli("user", "disable", login)
    with mail.mx() as client:
        client.mail("sender@example.org")
        code, text = client.rcpt(login)
    assert (code, text[:5]) == (550, b"5.1.1")


def test_ehlo_advertises_the_extensions(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        for extension in ("size", "8bitmime", "smtputf8", "starttls", "enhancedstatuscodes"):
            assert client.has_extn(extension), extension


def test_starttls_on_the_mx_port(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    subject = mail.unique("tls-")
    with mail.mx() as client:
        client.starttls(context=mail.tls_context())
        client.ehlo("mx.example.org")
        assert not client.has_extn("starttls")
        assert client.sendmail("sender@example.org", [login], mail.compose(subject)) == {}
    assert re.search(rb"\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)\r\n\tby .* with ESMTPS id [0-9A-F]{15}\r\n"
                     rb"\tfor <[^>]+>( tls TLS_[A-Z0-9_]+)?; ",
                     _headers(mail.received(login, password, subject)))  # RFC 3848, RFC 8314 section 4.3


def test_utf8_address_needs_smtputf8(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        client.command_encoding = "utf-8"
        code, text = client.docmd("MAIL", "FROM:<jos\u00e9@example.org>")
        assert (code, text[:5]) == (553, b"5.6.7")
        assert client.docmd("MAIL", "FROM:<jos\u00e9@example.org> SMTPUTF8")[0] == 250


def test_bare_postmaster_reaches_the_administrator(server, mail) -> None:  # type: ignore[no-untyped-def]
    # RFC 5321 section 4.5.1: every server accepts mail for "Postmaster" (any case,
    # without a domain); the first start makes postmaster@<mail_domain> an alias
    # of the first administrator.
    subject = mail.unique("postmaster-")
    with mail.mx() as client:
        client.mail("sender@example.org")
        assert client.docmd("RCPT", "TO:<Postmaster>")[0] == 250
        assert client.data(mail.compose(subject))[0] == 250
    assert mail.received(server.admin_login, server.admin_password, subject)


def test_helo_client_gets_plain_smtp(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    subject = mail.unique("helo-")
    with smtplib.SMTP(server.host, server.ports["smtp"], timeout=30) as client:
        assert client.helo("old.example.org")[0] == 250
        assert client.sendmail("sender@example.org", [login], mail.compose(subject)) == {}
    assert re.search(rb"with SMTP id [0-9A-F]{15}\r\n", _headers(mail.received(login, password, subject)))


def test_at_most_100_recipients_per_message(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, _ = server.make_user()
    local, domain = login.split("@")
    with mail.mx() as client:
        client.mail("sender@example.org")
        for n in range(100):
            assert client.rcpt(f"{local}+{n}@{domain}")[0] == 250
        code, text = client.rcpt(login)
    assert (code, text[:5]) == (452, b"4.5.3")


def test_authenticated_session_on_the_mx_port_is_held_to_its_own_addresses(server, mail) -> None:  # type: ignore[no-untyped-def]
    (ann, ann_pw), (bob, _) = server.make_user(), server.make_user()
    with mail.mx() as client:
        client.login(ann, ann_pw)
        code, text = client.mail(bob)
        assert (code, text[:5]) == (550, b"5.7.1")


def test_return_path_keeps_a_quoted_local_part_as_sent_rfc5321_section_4_4(server, mail) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    # (aiosmtpd's parser gives each address in its canonical form: "x\\)"@… as "x)"@…, the same address.)
    for sender in ('"x)(y"@example.org', '"a>b"@example.org', '"a b"@example.org', '"a\\\\b"@example.org'):
        subject = mail.unique("quoted-")
        with mail.mx() as client:
            assert client.sendmail(sender, [login], mail.compose(subject)) == {}
        assert mail.received(login, password, subject).startswith(f"Return-Path: <{sender}>\r\n".encode()), sender
