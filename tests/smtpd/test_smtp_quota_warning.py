"""The server's own mail goes through the outbound queue: a "mailbox almost full" warning when an
account's mail usage crosses 90% of its plan, once per crossing (RFC 3834 section 5: marked
Auto-Submitted; null envelope sender, RFC 5321 section 4.5.5)."""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from harness import launch_server, wait_until

from kantoor.smtpd.recipient_cache import TTL_SECONDS

CAPACITY = 30000
PLAN = f"""
[plans.small]
title = "Small"
mail_bytes = {CAPACITY}
imap = true
smtp = true
"""
WARNING = b"Subject: Your mailbox is almost full"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    proc = launch_server(tmp_path_factory.mktemp("warn") / "data", config=PLAN,
                         KANTOOR_DELIVERY_QUOTA_CHECK_SECONDS="0.2", KANTOOR_DELIVERY_POLL_SECONDS="0.2")
    try:
        yield proc
    finally:
        proc.stop()


_wait = wait_until


def _receive(mail: Any, login: str, size: int, subject: str) -> None:
    body = "\r\n".join(["y" * 78] * (size // 80))
    with mail.mx() as client:
        assert client.sendmail("a@example.org", [login], mail.compose(subject, body)) == {}


def _usage(srv: Any, login: str) -> int:
    core = srv.core()
    account = core.store.get_account(login)
    return core.quota.report(core.store, account)["mail"][0]


def _warnings(mail: Any, login: str, password: str) -> list[bytes]:
    return [m for m in mail.inbox(login, password) if WARNING in m]


def _outstanding(srv: Any, login: str) -> bool:
    return any(name == login and notice
               for _, name, _, _, notice in srv.core().store.mail_usage_for_notice("mail-quota", 90))


def test_one_warning_per_crossing_of_90_percent(srv, mail_for) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(srv)
    login, password = srv.make_user(plan="small")
    _receive(mail, login, 15000, "half")
    time.sleep(0.8)  # several checks: half full is no reason to warn
    assert _warnings(mail, login, password) == []

    _receive(mail, login, 13000, "most")
    assert _usage(srv, login) * 100 >= CAPACITY * 90
    [warning] = _wait(lambda: _warnings(mail, login, password))
    assert warning.startswith(b"Return-Path: <>\r\n")
    assert re.search(rb"^From: .*<postmaster@localhost>\r$", warning, re.MULTILINE)
    assert b"Auto-Submitted: auto-generated" in warning
    assert b"%)" in warning and b"Delete mail you no longer need" in warning
    time.sleep(0.8)
    assert len(_warnings(mail, login, password)) == 1  # not repeated while it stays over

    # Usage drops below the level (messages deleted over IMAP), then crosses it again: warned again.
    with imaplib.IMAP4(srv.host, srv.ports["imap"], timeout=30) as imap:
        imap.login(login, password)
        imap.select("INBOX")
        typ, data = imap.search(None, "SUBJECT", "half")
        imap.store(data[0].decode().replace(" ", ","), "+FLAGS", "\\Deleted")
        imap.expunge()
    _wait(lambda: not _outstanding(srv, login))
    assert _usage(srv, login) * 100 < CAPACITY * 90
    _receive(mail, login, 13000, "again")
    _wait(lambda: len(_warnings(mail, login, password)) == 2)


def test_the_warning_reaches_a_mailbox_already_too_full_for_it(srv, mail_for) -> None:  # type: ignore[no-untyped-def]
    """One message takes the mailbox from empty to nearly full, leaving less room than the warning needs: the
    warning (the server's own short mail) is still delivered, and counted, instead of waiting in the queue
    for room until it expires; other mail is still refused."""
    mail = mail_for(srv)
    login, password = srv.make_user(plan="small")
    _receive(mail, login, 29300, "nearly all")
    before = _usage(srv, login)
    assert before * 100 >= CAPACITY * 90
    [warning] = _wait(lambda: _warnings(mail, login, password))
    assert before <= CAPACITY < before + len(warning)  # it did not fit
    assert _usage(srv, login) == before + len(warning)  # and it is counted
    # Other mail is refused as before (RFC 5321: 452, try later): at once by the delivery's own quota check …
    with mail.mx() as client:
        assert client.docmd("MAIL", "FROM:<a@example.org>")[0] == 250
        if client.docmd("RCPT", f"TO:<{login}>")[0] == 250:  # the RCPT check's usage may be a second old
            code, text = client.data(mail.compose(mail.unique("refused-")))
            assert (code, text[:5]) == (452, b"4.2.2"), text
    # … and at RCPT once the usage this process keeps for it is renewed (kantoor.smtpd.recipient_cache).
    time.sleep(TTL_SECONDS)
    with mail.mx() as client:
        assert client.docmd("MAIL", "FROM:<a@example.org>")[0] == 250
        assert client.docmd("RCPT", f"TO:<{login}>")[0] == 452
