"""Mailbox full (RFC 3463 X.2.2): 452 4.2.2 at RCPT when known, at DATA otherwise. At DATA, a full mailbox
among several recipients holds back only its own copy: the others get the message, and the full one's copy
waits in the queue for room (as Postfix defers one recipient)."""

from __future__ import annotations

import imaplib
import subprocess
import sys
import time

import pytest

CAPACITY = 6000
BODY_4K = "\r\n".join(["x" * 78] * 50)  # about 4 kB in lines of legal length

TINY_PLAN = f"""
[plans.tiny]
title = "Tiny"
mail_bytes = {CAPACITY}
imap = true
smtp = true
"""


@pytest.fixture
def tiny(start_server, mail_for, tmp_path):  # type: ignore[no-untyped-def]
    """A server that knows a plan with room for about one 4 kB message, and a maker of its users."""
    # `kantoor serve` runs in tmp_path and reads ./kantoor.toml from there; so does the CLI below.
    (tmp_path / "kantoor.toml").write_text(TINY_PLAN)
    srv = start_server(data_dir=tmp_path / "data", KANTOOR_DELIVERY_RETRY_BASE_SECONDS="0.3",
                       KANTOOR_DELIVERY_RETRY_MAX_SECONDS="0.6", KANTOOR_DELIVERY_POLL_SECONDS="0.2")
    mail = mail_for(srv)

    def make_user() -> tuple[str, str]:
        login, password = f"{mail.unique('tiny')}@localhost", f"pw-{mail.unique()}-{mail.unique()}"
        subprocess.run([sys.executable, "-m", "kantoor", "user", "add", login, "--plan", "tiny", "--password-stdin"],
                       input=password + "\n", env=srv.env, cwd=tmp_path, check=True, capture_output=True,
                       text=True, timeout=60)
        with mail.mx() as client:  # fill it most of the way
            assert client.sendmail("a@example.org", [login], mail.compose(mail.unique("filler-"), BODY_4K)) == {}
        return login, password

    return srv, mail, make_user


def test_declared_size_that_does_not_fit_is_452_at_rcpt(tiny) -> None:  # type: ignore[no-untyped-def]
    _srv, mail, make_user = tiny
    login, _ = make_user()
    with mail.mx() as client:
        client.mail("a@example.org", ["SIZE=4000"])
        code, text = client.rcpt(login)
    assert (code, text[:5]) == (452, b"4.2.2")


def _wait(condition, seconds: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)
    return value


def test_a_full_mailbox_at_data_keeps_its_copy_and_the_others_get_theirs(tiny) -> None:  # type: ignore[no-untyped-def]
    srv, mail, make_user = tiny
    full, full_pw = make_user()
    roomy, roomy_pw = srv.make_user()
    subject = mail.unique("too-big-")
    with mail.mx() as client:
        client.mail("a@example.org")  # no SIZE: the RCPT check cannot know the message is too big
        assert client.rcpt(roomy)[0] == 250
        assert client.rcpt(full)[0] == 250
        code, text = client.data(mail.compose(subject, body=BODY_4K))
        assert (code, text[:5]) == (250, b"2.0.0") and full.encode() in text, text
    assert subject in mail.subjects(mail.inbox(roomy, roomy_pw))
    # The full mailbox's copy waits in the queue, tried again and again …
    row = _wait(lambda: [m for m in srv.core().store.list_outbound() if full in m.recipients and m.attempts >= 1])[0]
    assert "452 4.2.2" in row.last_error, row.last_error
    assert subject not in mail.subjects(mail.inbox(full, full_pw))
    # … and arrives once the owner makes room.
    with imaplib.IMAP4(srv.host, srv.ports["imap"], timeout=30) as imap:
        imap.login(full, full_pw)
        imap.select("INBOX")
        imap.store("1:*", "+FLAGS", "(\\Deleted)")
        imap.expunge()
    _wait(lambda: subject in mail.subjects(mail.inbox(full, full_pw)))
    assert mail.subjects(mail.inbox(roomy, roomy_pw)).count(subject) == 1  # and nobody got it twice


def test_a_full_mailbox_at_data_with_no_other_recipient_is_452_and_nothing_is_kept(tiny) -> None:  # type: ignore[no-untyped-def]
    srv, mail, make_user = tiny
    full, _ = make_user()
    other_full, _ = make_user()
    with mail.mx() as client:
        for sender, recipients in (("a@example.org", [full]), ("a@example.org", [full, other_full]),
                                   ("", [full, srv.make_user()[0]])):  # the null sender is never kept
            client.mail(sender)
            for recipient in recipients:
                assert client.rcpt(recipient)[0] == 250
            code, text = client.data(mail.compose(mail.unique("too-big-"), body=BODY_4K))
            assert (code, text[:5]) == (452, b"4.2.2"), (sender, recipients, text)
    assert not [m for m in srv.core().store.list_outbound() if full in m.recipients]
