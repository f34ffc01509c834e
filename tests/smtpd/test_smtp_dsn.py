"""Delivery status notifications (RFC 3461 DSN extension, RFC 3464 report format): NOTIFY, ORCPT, RET
and ENVID accepted, kept per recipient in the queue, reported as asked, and passed on to a next hop
that offers DSN. Next hops are fake MX servers: ``plain.test`` without DSN, ``dsn.test`` with it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import dkim
import pytest
from harness import launch_server, wait_until

FAST_RETRIES = {
    "KANTOOR_DELIVERY_RETRY_BASE_SECONDS": "0.3",
    "KANTOOR_DELIVERY_RETRY_MAX_SECONDS": "0.6",
    "KANTOOR_DELIVERY_POLL_SECONDS": "0.2",
    "KANTOOR_DELIVERY_CONNECT_TIMEOUT_SECONDS": "5",
}
REPORT = b"Content-Type: multipart/report"


@pytest.fixture(scope="module")
def plain(make_module_fake_mx: Any) -> Any:
    return make_module_fake_mx()


@pytest.fixture(scope="module")
def with_dsn(make_module_fake_mx: Any) -> Any:
    return make_module_fake_mx(dsn=True)


@pytest.fixture(scope="module")
def srv(plain: Any, with_dsn: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Kantoor announcing a delay after one second (instead of four hours)."""
    proc = launch_server(tmp_path_factory.mktemp("dsn") / "data",
                         KANTOOR_DELIVERY_STATIC_MX=f"plain.test=127.0.0.1:{plain.port},"
                                                    f"dsn.test=127.0.0.1:{with_dsn.port}",
                         KANTOOR_DELIVERY_DELAY_NOTIFY_SECONDS="1", **FAST_RETRIES)
    try:
        yield proc
    finally:
        proc.stop()


_wait = wait_until


def _reports(mail: Any, login: str, password: str) -> list[bytes]:
    return [m for m in mail.inbox(login, password) if REPORT in m.split(b"\r\n\r\n", 1)[0]]


def _one_report(mail: Any, login: str, password: str) -> tuple[bytes, Any, str, Any]:
    """(raw report, its human part, the delivery-status text, the returned part)."""
    raw = _wait(lambda: _reports(mail, login, password))[0]
    human, _, returned = message_from_bytes(raw).get_payload()
    # The delivery-status part as sent (CRLF, blank lines between the blocks).
    status = raw.split(b"Content-Type: message/delivery-status\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
    return raw, human, status.decode(), returned


def _submit(srv: Any, mail: Any, login: str, password: str, mail_args: str, rcpts: dict[str, str],
            subject: str) -> None:
    with mail.submission() as client:
        client.login(login, password)
        assert client.docmd("MAIL", f"FROM:<{login}>{mail_args}")[0] == 250
        for recipient, args in rcpts.items():
            code, text = client.docmd("RCPT", f"TO:<{recipient}>{args}")
            assert code == 250, text
        assert client.data(mail.compose(subject, sender=login))[0] == 250


def test_success_report_for_local_delivery_with_orcpt_and_envid_rfc3461_section_6_3(srv, mail_for) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(srv)
    (ann, ann_pw), (bob, bob_pw) = srv.make_user(), srv.make_user()
    subject = mail.unique("success-")
    _submit(srv, mail, ann, ann_pw, " RET=FULL ENVID=Env+2B42",
            {bob: " NOTIFY=SUCCESS ORCPT=rfc822;Bob+2Bfriends@Example.ORG"}, subject)
    assert mail.received(bob, bob_pw, subject)
    raw, human, status, returned = _one_report(mail, ann, ann_pw)
    assert raw.startswith(b"Return-Path: <>\r\n")  # RFC 3461 section 6.2: reports use the null sender
    assert re.search(rb"^From: .*<postmaster@localhost>\r$", raw, re.MULTILINE)
    assert b"Subject: Successful Mail Delivery Report" in raw
    assert "Original-Envelope-Id: Env+42" in status  # xtext decoded
    assert "Original-Recipient: rfc822; Bob+friends@Example.ORG" in status
    assert f"Final-Recipient: rfc822; {bob}" in status
    assert "Action: delivered" in status and "Status: 2.0.0" in status
    # RFC 3461 section 4.3: only a failure report returns the whole message.
    assert returned.get_content_type() == "text/rfc822-headers"


def test_relayed_report_when_the_next_hop_has_no_dsn_rfc3461_section_5_2_2(srv, mail_for, plain) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    friend = f"{mail.unique('friend')}@plain.test"
    _submit(srv, mail, ann, ann_pw, "", {friend: " NOTIFY=SUCCESS,FAILURE"}, mail.unique("relayed-"))
    [delivered] = plain.wait_for(friend)
    assert delivered.rcpt_options[friend] == []  # no DSN parameters to a server that does not offer DSN
    _, human, status, _ = _one_report(mail, ann, ann_pw)
    assert f"Final-Recipient: rfc822; {friend}" in status
    assert "Action: relayed" in status and "Remote-MTA: dns; 127.0.0.1" in status


def test_dsn_parameters_are_passed_to_a_next_hop_with_dsn_rfc3461_section_5_2_1(srv, mail_for, with_dsn) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    friend = f"{mail.unique('friend')}@dsn.test"
    _submit(srv, mail, ann, ann_pw, " RET=HDRS ENVID=track-1",
            {friend: " NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Friend+2B1@DSN.test"}, mail.unique("passed-"))
    [delivered] = with_dsn.wait_for(friend)
    assert {"RET=HDRS", "ENVID=TRACK-1"} <= set(delivered.mail_options)  # (the fake upper-cases them)
    assert set(delivered.rcpt_options[friend]) == {"NOTIFY=DELAY,SUCCESS", "ORCPT=RFC822;FRIEND+2B1@DSN.TEST"}
    time.sleep(1.0)  # the next hop reports now; a report from us would be a duplicate
    assert _reports(mail, ann, ann_pw) == []


def test_failure_report_per_recipient_and_notify_never_rfc3464_section_2_3(srv, mail_for, plain) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    asked, silent, fine = (f"{mail.unique(n)}@plain.test" for n in ("asked", "silent", "fine"))
    plain.handler.script[asked] = ["550 5.1.1 No such user"]
    plain.handler.script[silent] = ["553 5.1.3 Bad address"]
    subject = mail.unique("failed-")
    _submit(srv, mail, ann, ann_pw, "", {asked: f" NOTIFY=FAILURE ORCPT=rfc822;{asked}", silent: " NOTIFY=NEVER",
                                         fine: ""}, subject)
    plain.wait_for(fine)
    raw, human, status, returned = _one_report(mail, ann, ann_pw)
    assert b"Subject: Undelivered Mail Returned to Sender" in raw
    blocks = status.split("\r\n\r\n")
    assert blocks[0].startswith("Reporting-MTA: dns; ") and "Arrival-Date: " in blocks[0]
    [block] = [b for b in blocks if "Final-Recipient" in b]  # one recipient reported: NEVER means never
    assert f"Original-Recipient: rfc822; {asked}" in block and f"Final-Recipient: rfc822; {asked}" in block
    assert "Action: failed" in block and "Status: 5.1.1" in block
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user" in block and "Remote-MTA: dns; 127.0.0.1" in block
    assert "Last-Attempt-Date: " in block
    assert silent not in status and fine not in status
    assert returned.get_content_type() == "message/rfc822" and subject in returned.as_string()
    time.sleep(0.5)
    assert len(_reports(mail, ann, ann_pw)) == 1


def test_one_delay_report_then_delivery_rfc3464_section_2_3_3(srv, mail_for, plain) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    slow = f"{mail.unique('slow')}@plain.test"
    plain.handler.held.add(slow)
    _submit(srv, mail, ann, ann_pw, "", {slow: ""}, mail.unique("delayed-"))  # no NOTIFY: FAILURE,DELAY
    raw, human, status, returned = _one_report(mail, ann, ann_pw)
    assert b"Subject: Delayed Mail (still being retried)" in raw
    assert "Action: delayed" in status and "Status: 4.3.0" in status and "Will-Retry-Until: " in status
    _wait(lambda: [m for m in srv.core().store.list_outbound() if slow in m.recipients and m.attempts >= 6])
    assert len(_reports(mail, ann, ann_pw)) == 1  # announced once, not per retry
    plain.handler.held.discard(slow)
    plain.wait_for(slow)
    time.sleep(0.5)
    assert len(_reports(mail, ann, ann_pw)) == 1  # and no success report: it was not asked for


def test_report_to_a_remote_sender_is_dkim_signed_by_the_first_domain_rfc6376(srv, mail_for, plain) -> None:  # type: ignore[no-untyped-def]
    # Mail the server itself sends leaves through the queue signed like any other; the first start
    # gave the bootstrap domain (localhost) its key, the one `kantoor domain dns` publishes.
    mail = mail_for(srv)
    bob, bob_pw = srv.make_user()
    stranger = f"{mail.unique('stranger')}@plain.test"
    subject = mail.unique("inbound-")
    with mail.mx() as client:
        assert client.docmd("MAIL", f"FROM:<{stranger}> ENVID=in-1")[0] == 250
        assert client.docmd("RCPT", f"TO:<{bob}> NOTIFY=SUCCESS")[0] == 250
        assert client.data(mail.compose(subject, sender=stranger))[0] == 250
    assert mail.received(bob, bob_pw, subject)
    [report] = plain.wait_for(stranger)
    assert report.mail_from == "<>"  # the null sender (aiosmtpd shows it so)
    assert b"Action: delivered" in report.content
    assert (srv.data_dir / "dkim" / "localhost.pem").is_file()
    record = re.search(r"_domainkey\.localhost\.\s+IN\s+TXT\s+\((.*)\)", srv.cli("domain", "dns", "localhost").stdout)
    assert record is not None
    txt = "".join(re.findall(r'"([^"]*)"', record.group(1))).encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"kantoor._domainkey.localhost."
        return txt

    assert re.search(rb"^DKIM-Signature: .*\bd=localhost;", report.content, re.MULTILINE)
    assert dkim.verify(report.content, dnsfunc=dnsfunc)


def test_malformed_dsn_parameters_are_refused_rfc3461_section_4(srv, mail_for) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    with mail.submission() as client:
        client.login(ann, ann_pw)
        for bad in ("RET=ALL", "ENVID=a=b", "ENVID", "ENVID=ab+2b", "RET=FULL RET=HDRS", "SIZE=20000000 SIZE=10",
                    "BODY=8BITMIME BODY=7BIT"):  # xtext hex is upper case; no keyword twice
            code, text = client.docmd("MAIL", f"FROM:<{ann}> {bad}")
            assert (code, text[:5]) == (501, b"5.5.4"), bad
        assert client.docmd("MAIL", f"FROM:<{ann}>")[0] == 250
        for bad in ("NOTIFY=NEVER,SUCCESS", "NOTIFY=SOMETIMES", "ORCPT=no-address-type", "NOTIFY",
                    f"ORCPT=rfc822;{ann.replace('@', '+2b@')}", "NOTIFY=SUCCESS NOTIFY=NEVER"):
            code, text = client.docmd("RCPT", f"TO:<{ann}> {bad}")
            assert (code, text[:5]) == (501, b"5.5.4"), bad
        assert client.docmd("RCPT", f"TO:<{ann}> NOTIFY=failure,delay ORCPT=rfc822;{ann}")[0] == 250
        # An ORCPT as long as RFC 3461 section 4 allows: the RCPT line may be 500 characters longer than 512.
        long_orcpt = "rfc822;" + "x" * 460 + "+2B@example.org"
        assert client.docmd("RCPT", f"TO:<{ann}> NOTIFY=FAILURE ORCPT={long_orcpt}")[0] == 250


def test_dsn_parameters_of_the_other_command_are_unknown_555_rfc3461_section_4(srv, mail_for) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    with mail.submission() as client:
        client.login(ann, ann_pw)
        for misplaced in ("NOTIFY=SUCCESS", "ORCPT=rfc822;x@example.org"):
            code, text = client.docmd("MAIL", f"FROM:<{ann}> {misplaced}")
            assert code == 555, (misplaced, text)
        assert client.docmd("MAIL", f"FROM:<{ann}> RET=HDRS ENVID=QQ+2B1")[0] == 250
        for misplaced in ("RET=HDRS", "ENVID=abc"):
            code, text = client.docmd("RCPT", f"TO:<{ann}> {misplaced}")
            assert code == 555, (misplaced, text)


def test_every_report_part_ends_its_last_line_rfc2046_section_5_1_1() -> None:
    # The CRLF before a boundary line belongs to the boundary: the status fields (RFC 3464 section 2.1: each ends
    # with CRLF) and the returned header need one more of their own.
    import datetime as dt
    import re

    from kantoor.smtpd.bounce import FAILED, RecipientReport, delivery_status_notification

    original = b"From: ann@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    for ret, returned_end in (("HDRS", b"Subject: hi\r\n\r\n"), ("FULL", b"body\r\n\r\n")):
        report = delivery_status_notification(
            hostname="mx.example.org", sender="ann@example.org", original=original, arrival=dt.datetime.now(dt.UTC),
            reports=[RecipientReport("bob@remote.test", FAILED, "5.1.1", "550 5.1.1 no such user")], ret=ret)
        boundary = re.search(rb'boundary="([^"]+)"', report).group(1)  # type: ignore[union-attr]
        parts = report.split(b"--" + boundary)
        assert len(parts) == 5 and parts[4] == b"--\r\n"
        assert parts[2].endswith(b"\r\n\r\n") and re.search(rb"Last-Attempt-Date: [^\r\n]+\r\n\r\n\Z", parts[2])
        assert parts[3].endswith(returned_end), ret


def test_a_report_on_a_utf8_address_is_a_global_delivery_status_rfc6533_section_6() -> None:
    import datetime as dt

    from kantoor.smtpd.bounce import FAILED, RecipientReport, delivery_status_notification

    def report(recipient: str, original: bytes, ret: str = "") -> bytes:
        return delivery_status_notification(
            hostname="mx.example.org", sender="ann@example.org", original=original, arrival=dt.datetime.now(dt.UTC),
            reports=[RecipientReport(recipient, FAILED, "5.1.1", "550 5.1.1 no such user")], ret=ret)

    ascii_original = b"From: ann@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    utf8_original = "From: ann@example.org\r\nSubject: Grüße\r\n\r\nbody\r\n".encode()
    plain = report("bob@remote.test", ascii_original)
    assert b"Content-Type: message/delivery-status\r\n" in plain and b"Final-Recipient: rfc822; bob@" in plain
    assert b"Content-Type: message/rfc822\r\n" in plain
    utf8 = report("j\u00fcrgen@b\u00fccher.test", utf8_original)
    assert b"Content-Type: message/global-delivery-status\r\n" in utf8
    assert "Final-Recipient: utf-8; jürgen@bücher.test".encode() in utf8
    assert b"Content-Type: message/global\r\n" in utf8
    assert b"Content-Type: message/global-headers\r\n" in report("bob@remote.test", utf8_original, ret="HDRS")
