"""SIZE (RFC 1870): the limit is advertised and enforced at MAIL and at DATA, with 552 5.3.4."""

from __future__ import annotations

LIMIT = 4096


def test_ehlo_advertises_the_configured_limit(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        assert int(client.esmtp_features["size"]) == 50 * 1024 * 1024  # limits.max_message_bytes default


def test_declared_size_over_the_limit_is_refused_at_mail(mail) -> None:  # type: ignore[no-untyped-def]
    with mail.mx() as client:
        code, text = client.mail("sender@example.org", [f"SIZE={50 * 1024 * 1024 + 1}"])
        assert (code, text[:5]) == (552, b"5.3.4")
        assert client.mail("sender@example.org", ["SIZE=1000"])[0] == 250


def test_undeclared_oversized_data_is_refused_and_nothing_is_stored(start_server, mail_for) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(KANTOOR_LIMITS_MAX_MESSAGE_BYTES=str(LIMIT))
    mail = mail_for(srv)
    login, password = srv.make_user()
    subject = mail.unique("big-")
    with mail.mx() as client:
        assert int(client.esmtp_features["size"]) == LIMIT
        client.mail("sender@example.org")  # no SIZE parameter: found out while reading DATA
        client.rcpt(login)
        code, text = client.data(mail.compose(subject, body="x" * 70 + ("\r\n" + "x" * 70) * 100))
        assert (code, text[:5]) == (552, b"5.3.4")
        # The session is still usable after the refusal.
        client.mail("sender@example.org")
        client.rcpt(login)
        assert client.data(mail.compose(mail.unique("small-")))[0] == 250
    stored = mail.inbox(login, password)
    assert len(stored) == 1 and subject.encode() not in stored[0]
