"""Mailbox full (RFC 3463 X.2.2): 452 4.2.2 at RCPT when known, at DATA otherwise; all or nothing."""

from __future__ import annotations

import subprocess
import sys

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
    srv = start_server(data_dir=tmp_path / "data")
    mail = mail_for(srv)

    def make_user() -> str:
        login, password = f"{mail.unique('tiny')}@localhost", f"pw-{mail.unique()}-{mail.unique()}"
        subprocess.run([sys.executable, "-m", "kantoor", "user", "add", login, "--plan", "tiny", "--password-stdin"],
                       input=password + "\n", env=srv.env, cwd=tmp_path, check=True, capture_output=True,
                       text=True, timeout=60)
        with mail.mx() as client:  # fill it most of the way
            assert client.sendmail("a@example.org", [login], mail.compose(mail.unique("filler-"), BODY_4K)) == {}
        return login

    return srv, mail, make_user


def test_declared_size_that_does_not_fit_is_452_at_rcpt(tiny) -> None:  # type: ignore[no-untyped-def]
    _srv, mail, make_user = tiny
    login = make_user()
    with mail.mx() as client:
        client.mail("a@example.org", ["SIZE=4000"])
        code, text = client.rcpt(login)
    assert (code, text[:5]) == (452, b"4.2.2")


def test_full_mailbox_at_data_delivers_to_no_recipient(tiny) -> None:  # type: ignore[no-untyped-def]
    srv, mail, make_user = tiny
    full = make_user()
    roomy, roomy_pw = srv.make_user()
    subject = mail.unique("too-big-")
    with mail.mx() as client:
        client.mail("a@example.org")  # no SIZE: the RCPT check cannot know the message is too big
        assert client.rcpt(roomy)[0] == 250
        assert client.rcpt(full)[0] == 250
        code, text = client.data(mail.compose(subject, body=BODY_4K))
        assert (code, text[:5]) == (452, b"4.2.2")
        assert full.encode() in text
    # One DATA reply covers both recipients: the roomy one got nothing either.
    assert subject not in mail.subjects(mail.inbox(roomy, roomy_pw))
