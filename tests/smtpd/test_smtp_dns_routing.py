"""Routing outbound mail by DNS (RFC 5321 section 5.1, RFC 7505) against a fake authoritative zone:
the server's resolver (``KANTOOR_DELIVERY_DNS_NAMESERVERS``) asks a DNS server in the test process,
and the MX hosts it names are fake MX servers on 127.0.0.1 and ::1 at one port number
(``KANTOOR_DELIVERY_REMOTE_PORT``), told apart by address."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from harness import launch_server, wait_until

FAST_RETRIES = {
    "KANTOOR_DELIVERY_RETRY_BASE_SECONDS": "0.3",
    "KANTOOR_DELIVERY_RETRY_MAX_SECONDS": "0.6",
    "KANTOOR_DELIVERY_POLL_SECONDS": "0.2",
    "KANTOOR_DELIVERY_CONNECT_TIMEOUT_SECONDS": "5",
}


@pytest.fixture(scope="module")
def mx_port(port_on_both_loopbacks: int) -> int:
    return port_on_both_loopbacks


@pytest.fixture(scope="module")
def mx_v4(mx_port: int, make_module_fake_mx: Any) -> Any:
    return make_module_fake_mx(host="127.0.0.1", port=mx_port)


@pytest.fixture(scope="module")
def routed(zone: Any, mx_port: int, mx_v4: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    proc = launch_server(tmp_path_factory.mktemp("routed") / "data",
                         KANTOOR_DELIVERY_DNS_NAMESERVERS=f"127.0.0.1:{zone.port}",
                         KANTOOR_DELIVERY_REMOTE_PORT=str(mx_port), **FAST_RETRIES)
    try:
        yield proc
    finally:
        proc.stop()


_wait = wait_until


def _two_mx_hosts(zone: Any, domain: str, first: tuple[str, str] | None = ("AAAA", "::1"),
                  second: tuple[str, str] | None = ("A", "127.0.0.1"), listed_backwards: bool = False) -> None:
    """``domain`` with MX 10 mx-a.<domain> and MX 20 mx-b.<domain>, whose records are ``first`` and ``second``
    (type, value; None: no record at all)."""
    hosts = [f"10 mx-a.{domain}.", f"20 mx-b.{domain}."]
    zone.add(domain, "MX", *(reversed(hosts) if listed_backwards else hosts))
    for host, record in (("mx-a", first), ("mx-b", second)):
        if record is not None:
            zone.add(f"{host}.{domain}", *record)


def _send(srv: Any, mail: Any, recipient: str) -> tuple[str, str]:
    login, password = srv.make_user()
    with mail.submission() as client:
        client.login(login, password)
        assert client.sendmail(login, [recipient], mail.compose(mail.unique("routed-"), sender=login)) == {}
    return login, password


def _queue_row(srv: Any, recipient: str) -> Any:
    rows = [m for m in srv.core().store.list_outbound(state=None) if recipient in m.recipients]
    return rows[0] if rows else None


def _bounce_status(mail: Any, login: str, password: str) -> str:
    raw = _wait(lambda: [m for m in mail.inbox(login, password) if b"Undelivered Mail Returned" in m])[0]
    return message_from_bytes(raw).get_payload()[1].as_bytes().decode()


def _bounced_at_once(srv: Any, mail: Any, mx: Any, recipient: str, status_code: str) -> Any:
    """Submit to ``recipient``; it must bounce with ``status_code`` after one attempt, nothing sent to ``mx``.
    Returns its queue row."""
    login, password = _send(srv, mail, recipient)
    status = _bounce_status(mail, login, password)
    assert f"Final-Recipient: rfc822; {recipient}" in status and f"Status: {status_code}" in status, status
    row = _queue_row(srv, recipient)
    assert (row.state, row.attempts) == ("failed", 1)  # no retries
    assert mx.messages_for(recipient) == []
    return row


def test_lowest_preference_mx_is_tried_first_rfc5321_section_5_1(  # type: ignore[no-untyped-def]
        routed, mail_for, zone, mx_port, mx_v4, make_fake_mx) -> None:
    # Listed in the answer in the "wrong" order: the preference decides, not the order.
    _two_mx_hosts(zone, "order.test", listed_backwards=True)
    mx_v6 = make_fake_mx(host="::1", port=mx_port)
    mail = mail_for(routed)
    recipient = f"{mail.unique('pref')}@order.test"
    _send(routed, mail, recipient)
    assert len(mx_v6.wait_for(recipient)) == 1
    assert mx_v4.messages_for(recipient) == []


def test_next_mx_when_the_first_refuses_the_connection_rfc5321_section_5_1(routed, mail_for, zone, mx_v4) -> None:  # type: ignore[no-untyped-def]
    _two_mx_hosts(zone, "fallback.test")  # nothing listens on the first one's ::1: connection refused
    mail = mail_for(routed)
    recipient = f"{mail.unique('fb')}@fallback.test"
    _send(routed, mail, recipient)
    assert len(mx_v4.wait_for(recipient)) == 1
    _wait(lambda: (row := _queue_row(routed, recipient)) is not None and row.state == "delivered")
    assert _queue_row(routed, recipient).attempts == 1  # in the same attempt, not on a retry


def test_domain_without_mx_uses_its_address_implicit_mx_rfc5321_section_5_1(routed, mail_for, zone, mx_v4) -> None:  # type: ignore[no-untyped-def]
    zone.add("implicit.test", "A", "127.0.0.1")
    mail = mail_for(routed)
    recipient = f"{mail.unique('imp')}@implicit.test"
    _send(routed, mail, recipient)
    assert len(mx_v4.wait_for(recipient)) == 1


def test_null_mx_bounces_at_once_with_5_1_10_rfc7505_section_4_1(routed, mail_for, zone, mx_v4) -> None:  # type: ignore[no-untyped-def]
    zone.add("nullmx.test", "MX", "0 .")
    zone.add("nullmx.test", "A", "127.0.0.1")  # must not be used as an implicit MX
    mail = mail_for(routed)
    recipient = f"{mail.unique('null')}@nullmx.test"
    _bounced_at_once(routed, mail, mx_v4, recipient, "5.1.10")


def test_domain_that_does_not_exist_bounces_rfc5321_section_5_1(routed, mail_for, zone) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(routed)
    recipient = f"{mail.unique('nx')}@nowhere.test"  # NXDOMAIN
    login, password = _send(routed, mail, recipient)
    status = _bounce_status(mail, login, password)
    assert "Action: failed" in status and "Status: 5.1.2" in status, status
    # This server's own diagnostic, not a remote server's reply (RFC 3464 section 2.3.6; Postfix: X-Postfix).
    assert "Diagnostic-Code: X-Kantoor; 550 5.1.2 Domain" in status, status
    assert _queue_row(routed, recipient).attempts == 1


def test_server_failure_is_retried_then_delivered_once_rfc5321_section_4_5_4_1(  # type: ignore[no-untyped-def]
        routed, mail_for, zone, mx_v4) -> None:
    zone.add("flaky.test", "MX", "10 mx.flaky.test.")
    zone.add("mx.flaky.test", "A", "127.0.0.1")
    zone.servfail.add("flaky.test")
    mail = mail_for(routed)
    recipient = f"{mail.unique('sf')}@flaky.test"
    login, password = _send(routed, mail, recipient)
    _wait(lambda: (row := _queue_row(routed, recipient)) is not None and row.attempts >= 2)
    row = _queue_row(routed, recipient)
    assert row.state == "queued" and "4.4.3" in row.last_error, row.last_error
    assert mx_v4.messages_for(recipient) == []
    zone.servfail.discard("flaky.test")
    assert len(mx_v4.wait_for(recipient)) == 1
    _wait(lambda: _queue_row(routed, recipient).state == "delivered")
    assert not [m for m in mail.inbox(login, password) if b"Undelivered" in m]  # a temporary failure: no bounce


def test_mx_naming_this_server_first_bounces_as_a_loop_and_lower_hosts_are_not_tried_rfc5321_section_5_1(  # type: ignore[no-untyped-def]
        routed, mail_for, zone, mx_v4) -> None:
    # This server's name (server.hostname, "localhost" here) is the best MX of a domain it does not serve: the
    # less preferred host would only relay the mail back, so it is not tried and the mail bounces at once.
    zone.add("loop.test", "MX", "10 localhost.", "20 mx.loop.test.")
    zone.add("mx.loop.test", "A", "127.0.0.1")
    mail = mail_for(routed)
    recipient = f"{mail.unique('loop')}@loop.test"
    row = _bounced_at_once(routed, mail, mx_v4, recipient, "5.4.6")
    assert "loops back" in row.last_error, row.last_error


def test_mx_hosts_preferred_over_this_server_are_still_used_rfc5321_section_5_1(  # type: ignore[no-untyped-def]
        routed, mail_for, zone, mx_port, mx_v4, make_fake_mx) -> None:
    # This server as a backup MX (20) of a domain whose primary (10) is elsewhere: the primary gets the mail.
    zone.add("backup.test", "MX", "20 LOCALHOST.", "10 mx-a.backup.test.")
    zone.add("mx-a.backup.test", "AAAA", "::1")
    mx_v6 = make_fake_mx(host="::1", port=mx_port)
    mail = mail_for(routed)
    recipient = f"{mail.unique('bk')}@backup.test"
    _send(routed, mail, recipient)
    assert len(mx_v6.wait_for(recipient)) == 1


def test_hosts_less_preferred_than_this_server_are_not_tried_when_the_primary_is_down_rfc5321_section_5_1(  # type: ignore[no-untyped-def]
        routed, mail_for, zone, mx_v4) -> None:
    # The primary (10) refuses connections; the host after this server (30) would relay the mail back to it,
    # so the message waits in the queue for the primary instead.
    zone.add("backup2.test", "MX", "30 mx-c.backup2.test.", "20 localhost.", "10 mx-a.backup2.test.")
    zone.add("mx-a.backup2.test", "AAAA", "::1")  # nothing listens there
    zone.add("mx-c.backup2.test", "A", "127.0.0.1")
    mail = mail_for(routed)
    recipient = f"{mail.unique('bk2')}@backup2.test"
    _send(routed, mail, recipient)
    _wait(lambda: (row := _queue_row(routed, recipient)) is not None and row.attempts >= 2)
    assert _queue_row(routed, recipient).state == "queued"
    assert mx_v4.messages_for(recipient) == []


def test_a_host_that_defers_at_rcpt_passes_the_recipient_to_the_next_mx_rfc5321_section_5_1(  # type: ignore[no-untyped-def]
        routed, mail_for, zone, mx_port, mx_v4, make_fake_mx) -> None:
    # A 4xx from a host that is not the last is no reason to wait: the next one is asked at once (as Postfix does).
    _two_mx_hosts(zone, "busy.test")
    busy = make_fake_mx(host="::1", port=mx_port)
    mail = mail_for(routed)
    recipient = f"{mail.unique('busy')}@busy.test"
    busy.handler.held.add(recipient)
    _send(routed, mail, recipient)
    assert len(mx_v4.wait_for(recipient)) == 1
    _wait(lambda: (row := _queue_row(routed, recipient)) is not None and row.state == "delivered")
    assert _queue_row(routed, recipient).attempts == 1 and busy.messages_for(recipient) == []


def test_an_mx_host_whose_address_look_up_fails_is_skipped_not_the_hosts_after_it(  # type: ignore[no-untyped-def]
        routed, mail_for, zone, mx_v4) -> None:
    _two_mx_hosts(zone, "halfbroken.test", first=("A", "127.0.0.1"))
    zone.servfail.add("mx-a.halfbroken.test")
    mail = mail_for(routed)
    recipient = f"{mail.unique('half')}@halfbroken.test"
    _send(routed, mail, recipient)
    assert len(mx_v4.wait_for(recipient)) == 1
    _wait(lambda: (row := _queue_row(routed, recipient)) is not None and row.state == "delivered")
    assert _queue_row(routed, recipient).attempts == 1


def test_an_address_literal_is_delivered_to_that_address_without_dns_rfc5321_section_4_1_3(  # type: ignore[no-untyped-def]
        routed, mail_for, mx_v4) -> None:
    mail = mail_for(routed)
    recipient = f"{mail.unique('lit')}@[127.0.0.1]"
    _send(routed, mail, recipient)
    assert len(mx_v4.wait_for(recipient)) == 1


def test_a_domain_dns_cannot_carry_bounces_without_costing_the_other_domains_a_copy(  # type: ignore[no-untyped-def]
        routed, mail_for, zone, mx_v4) -> None:
    # One message to a domain that works and one no DNS query can name (a symbol IDNA 2008 refuses): the first
    # gets exactly one copy — a fault with the second must not mark it for another try — the second bounces.
    zone.add("fine.test", "A", "127.0.0.1")
    mail = mail_for(routed)
    login, password = routed.make_user()
    good, bad = f"{mail.unique('ok')}@fine.test", f"{mail.unique('sym')}@\u2603.test"
    with mail.submission() as client:
        client.login(login, password)
        assert client.sendmail(login, [good, bad], mail.compose(mail.unique("two-"), sender=login),
                               mail_options=["SMTPUTF8"]) == {}
    status = _bounce_status(mail, login, password)
    assert "Status: 5.1.2" in status and "Action: failed" in status, status
    assert good not in status
    _wait(lambda: (row := _queue_row(routed, good)) is not None and row.state != "queued")
    assert len(mx_v4.messages_for(good)) == 1


def test_mx_hosts_without_any_address_bounce_at_once_with_5_4_4(routed, mail_for, zone, mx_v4) -> None:  # type: ignore[no-untyped-def]
    # DNS answered, without failing, that the named hosts have no address: retrying for days would only hear
    # the same (Postfix bounces it as 5.4.4 too). A host whose look-up fails is another matter (see above).
    _two_mx_hosts(zone, "ghost.test", first=None, second=("TXT", '"no address here"'))
    mail = mail_for(routed)
    recipient = f"{mail.unique('ghost')}@ghost.test"
    _bounced_at_once(routed, mail, mx_v4, recipient, "5.4.4")
