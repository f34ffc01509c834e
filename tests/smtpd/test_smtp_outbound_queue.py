"""Outbound mail (RFC 5321 sections 4.5.4 and 5, RFC 3464, RFC 6376): submitted mail for other
domains goes through the database queue to the domain's MX — here a fake MX in the test
process, reached through the static MX map (``KANTOOR_DELIVERY_STATIC_MX``)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import dkim
import pytest
from harness import launch_server, require_tool, wait_until

REMOTE = "remote.test"
SIGNING_DOMAIN = "kantoor.test"
FAST_RETRIES = {
    "KANTOOR_DELIVERY_RETRY_BASE_SECONDS": "0.3",
    "KANTOOR_DELIVERY_RETRY_MAX_SECONDS": "0.6",
    "KANTOOR_DELIVERY_POLL_SECONDS": "0.2",
    "KANTOOR_DELIVERY_CONNECT_TIMEOUT_SECONDS": "5",
}


@pytest.fixture(scope="module")
def relay(fake_mx: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Kantoor whose outbound mail for remote.test goes to the fake MX, retrying within a second."""
    proc = launch_server(tmp_path_factory.mktemp("relay") / "data",
                         KANTOOR_DELIVERY_STATIC_MX=f"{REMOTE}=127.0.0.1:{fake_mx.port}", **FAST_RETRIES)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def dns_records(relay: Any) -> str:
    """What `kantoor domain add` prints for the signing domain (the records to publish)."""
    return relay.cli("domain", "add", SIGNING_DOMAIN).stdout


def _submit(mail: Any, login: str, password: str, recipients: list[str], subject: str) -> dict:  # type: ignore[type-arg]
    with mail.submission() as client:
        client.login(login, password)
        return client.sendmail(login, recipients, mail.compose(subject, sender=login))


def _remote(name: str) -> str:
    return f"{name}@{REMOTE}"


_wait = wait_until


def test_domain_add_prints_mx_spf_dkim_and_dmarc_records(dns_records: str) -> None:
    assert re.search(rf"^{SIGNING_DOMAIN}\.\s+IN\s+MX\s+10 ", dns_records, re.MULTILINE)
    assert '"v=spf1 ' in dns_records
    assert re.search(rf"^kantoor\._domainkey\.{SIGNING_DOMAIN}\.\s+IN\s+TXT\s+\( \"v=DKIM1; k=rsa; p=", dns_records,
                     re.MULTILINE)
    assert f"_dmarc.{SIGNING_DOMAIN}." in dns_records and "v=DMARC1" in dns_records


def test_submitted_mail_reaches_the_remote_mx_dkim_signed_rfc6376(relay, mail_for, fake_mx, dns_records) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(relay)
    login, password = relay.make_user(f"{mail.unique('ann')}@{SIGNING_DOMAIN}")
    friend = _remote(mail.unique("friend"))
    assert _submit(mail, login, password, [friend], mail.unique("signed-")) == {}
    [delivered] = fake_mx.wait_for(friend)
    assert delivered.mail_from == login
    # Signed when it leaves (RFC 6376 section 5), so the signature is the topmost field, above our Received.
    assert delivered.content.startswith(b"DKIM-Signature: ")
    assert b"\r\nReceived: from laptop.example.org" in delivered.content.split(b"\r\n\r\n", 1)[0]
    # The public key exactly as the administrator was told to publish it.
    record = re.search(r"_domainkey\.\S+\s+IN\s+TXT\s+\((.*)\)", dns_records).group(1)  # type: ignore[union-attr]
    txt = "".join(re.findall(r'"([^"]*)"', record)).encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"kantoor._domainkey.{SIGNING_DOMAIN}.".encode()
        return txt

    assert b"DKIM-Signature:" in delivered.content
    assert dkim.verify(delivered.content, dnsfunc=dnsfunc)


def test_local_and_remote_recipients_in_one_transaction(relay, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(relay)
    (ann, ann_pw), (bob, bob_pw) = relay.make_user(), relay.make_user()
    friend = _remote(mail.unique("friend"))
    subject = mail.unique("mixed-")
    assert _submit(mail, ann, ann_pw, [bob, friend], subject) == {}
    assert mail.received(bob, bob_pw, subject)
    [delivered] = fake_mx.wait_for(friend)
    assert delivered.rcpt_tos == [friend]


def test_4xx_is_retried_with_back_off_and_delivered_once_rfc5321_4_5_4_1(relay, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(relay)
    ann, ann_pw = relay.make_user()
    friend = _remote(mail.unique("busy"))
    fake_mx.handler.script[friend] = ["451 4.3.0 Busy, come back later", "452 4.2.2 Still busy"]
    assert _submit(mail, ann, ann_pw, [friend], mail.unique("retried-")) == {}
    fake_mx.wait_for(friend)
    time.sleep(1.0)  # longer than the back-off: a second copy would have arrived by now
    assert len(fake_mx.messages_for(friend)) == 1
    listing = relay.cli("queue", "list", "--all").stdout
    [line] = [line for line in listing.splitlines() if friend in line]
    assert "\tdelivered\t" in line and "attempts 3" in line


def test_5xx_bounces_to_the_senders_inbox_rfc3464(relay, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(relay)
    ann, ann_pw = relay.make_user()
    gone = _remote(mail.unique("gone"))
    fake_mx.handler.script[gone] = ["550 5.1.1 No such user here"]
    subject = mail.unique("bounced-")
    assert _submit(mail, ann, ann_pw, [gone], subject) == {}

    def bounce() -> bytes | None:
        found = [m for m in mail.inbox(ann, ann_pw) if b"Undelivered Mail Returned" in m]
        return found[0] if found else None

    raw = _wait(bounce)
    assert raw.startswith(b"Return-Path: <>\r\n")  # a bounce has the null sender (RFC 5321 section 4.5.5)
    report = message_from_bytes(raw)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    human, status, original = report.get_payload()
    assert status.get_content_type() == "message/delivery-status"
    text = status.as_bytes().decode()
    assert f"Final-Recipient: rfc822; {gone}" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user here" in text
    assert original.get_content_type() == "message/rfc822"
    assert subject in original.as_string()
    assert fake_mx.messages_for(gone) == []


def test_dsn_ret_hdrs_and_envid_shape_the_bounce_rfc3461_section_4(relay, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(relay)
    ann, ann_pw = relay.make_user()
    gone = _remote(mail.unique("gone"))
    fake_mx.handler.script[gone] = ["550 5.1.1 No such user here"]
    subject = mail.unique("dsn-")
    with mail.submission() as client:
        assert client.has_extn("dsn")
        client.login(ann, ann_pw)
        assert client.docmd("MAIL", f"FROM:<{ann}> RET=HDRS ENVID=Env-{subject}")[0] == 250
        assert client.docmd("RCPT", f"TO:<{gone}> NOTIFY=FAILURE,DELAY ORCPT=rfc822;{gone}")[0] == 250
        assert client.data(mail.compose(subject, body="the secret body", sender=ann))[0] == 250
        client.rset()
        code, text = client.docmd("MAIL", f"FROM:<{ann}> RET=EVERYTHING")
        assert (code, text[:5]) == (501, b"5.5.4")
    raw = _wait(lambda: [m for m in mail.inbox(ann, ann_pw) if b"Undelivered Mail Returned" in m])[0]
    human, status, returned = message_from_bytes(raw).get_payload()
    assert f"Original-Envelope-Id: Env-{subject}" in status.as_bytes().decode()
    assert returned.get_content_type() == "text/rfc822-headers"
    assert subject.encode() in raw and b"the secret body" not in raw


def test_partial_failure_delivers_the_rest_and_bounces_only_the_refused(relay, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(relay)
    ann, ann_pw = relay.make_user()
    ok, gone = _remote(mail.unique("ok")), _remote(mail.unique("gone"))
    fake_mx.handler.script[gone] = ["550 5.1.1 Unknown"]
    assert _submit(mail, ann, ann_pw, [ok, gone], mail.unique("partial-")) == {}
    assert fake_mx.wait_for(ok)[0].rcpt_tos == [ok]
    raw = _wait(lambda: [m for m in mail.inbox(ann, ann_pw) if b"Undelivered Mail Returned" in m])[0]
    assert f"Final-Recipient: rfc822; {gone}".encode() in raw and ok.encode() not in raw.split(b"\r\n\r\n")[0]


def test_unauthenticated_mx_still_never_relays(relay, mail_for) -> None:  # type: ignore[no-untyped-def]
    with mail_for(relay).mx() as client:
        client.mail("sender@example.org")
        code, text = client.rcpt(_remote("victim"))
    assert (code, text[:5]) == (550, b"5.7.1")


def _queued(srv: Any) -> dict[str, tuple[int, int]]:
    """The queue as `kantoor queue list` shows it: recipient → (queue id, attempts)."""
    rows = [line.split("\t") for line in srv.cli("queue", "list").stdout.splitlines() if "\t" in line]
    return {row[3]: (int(row[0]), int(row[5].split()[1])) for row in rows}


def _attempts(srv: Any) -> dict[str, int]:
    """recipient → attempts of the queued messages, read in-process (cheaper than the CLI when polling)."""
    from kantoor.config import load_settings
    from kantoor.core import open_core
    from kantoor.storage.outbound import recipients_of

    core = open_core(load_settings(path=None, environ={"KANTOOR_STORAGE_DATA_DIR": str(srv.data_dir)}), migrate=False)
    try:
        return {r: m.attempts for m in core.store.list_outbound() for r in recipients_of(m)}
    finally:
        core.close()


def test_restart_mid_queue_loses_and_duplicates_nothing(start_server, mail_for, fake_mx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**FAST_RETRIES, "KANTOOR_DELIVERY_RETRY_BASE_SECONDS": "3600", "KANTOOR_DELIVERY_RETRY_MAX_SECONDS": "3600",
           "KANTOOR_DELIVERY_STATIC_MX": f"{REMOTE}=127.0.0.1:{fake_mx.port}"}
    srv = start_server(tmp_path / "restarted", **env)
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    held = [_remote(mail.unique("held")) for _ in range(3)]
    dropped = _remote(mail.unique("dropped"))
    fake_mx.handler.held |= {*held, dropped}
    for recipient in [*held, dropped]:
        assert _submit(mail, ann, ann_pw, [recipient], mail.unique("queued-")) == {}
    # Each was tried once, got 451, and now waits an hour.
    _wait(lambda: all(_attempts(srv).get(r) == 1 for r in [*held, dropped]))
    queued = _queued(srv)
    assert srv.stop() == 0
    fake_mx.handler.held -= {*held, dropped}
    srv = start_server(tmp_path / "restarted", **env)
    assert set(_queued(srv)) == {*held, dropped}  # nothing lost
    srv.cli("queue", "delete", str(queued[dropped][0]))
    srv.cli("queue", "retry", "--all")
    for recipient in held:
        fake_mx.wait_for(recipient)
    _wait(lambda: _attempts(srv) == {})
    time.sleep(0.5)
    assert [len(fake_mx.messages_for(r)) for r in held] == [1, 1, 1]  # nothing duplicated
    assert fake_mx.messages_for(dropped) == []
    assert srv.cli("queue", "retry", "999999", check=False).returncode == 1


@pytest.fixture(scope="module")
def strict(fake_mx: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Kantoor that lets an account send 2 messages (to 3 recipients on other servers in all) an hour and gives
    up on a message after 1.5 s."""
    proc = launch_server(tmp_path_factory.mktemp("strict") / "data", KANTOOR_DELIVERY_MAX_MESSAGES_PER_HOUR="2",
                         KANTOOR_DELIVERY_MAX_RECIPIENTS_PER_HOUR="3",
                         KANTOOR_DELIVERY_EXPIRE_SECONDS="1.5",
                         KANTOOR_DELIVERY_STATIC_MX=f"{REMOTE}=127.0.0.1:{fake_mx.port}", **FAST_RETRIES)
    try:
        yield proc
    finally:
        proc.stop()


def test_undeliverable_in_time_bounces_with_4_4_7_rfc3464_section_2_3_4(strict, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(strict)
    ann, ann_pw = strict.make_user()
    never = _remote(mail.unique("never"))
    fake_mx.handler.held.add(never)
    assert _submit(mail, ann, ann_pw, [never], mail.unique("expiring-")) == {}
    raw = _wait(lambda: [m for m in mail.inbox(ann, ann_pw) if b"Undelivered Mail Returned" in m])[0]
    status = message_from_bytes(raw).get_payload()[1].as_bytes().decode()
    assert f"Final-Recipient: rfc822; {never}" in status
    assert "Action: failed" in status and "Status: 4.4.7" in status
    assert "Diagnostic-Code: smtp; 451 4.3.0 Try again later" in status  # the remote's last reply, as the diagnostic
    assert fake_mx.messages_for(never) == []


def test_sending_rate_limit_per_account(strict, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    srv = strict
    mail = mail_for(srv)
    (ann, ann_pw), (bob, bob_pw) = srv.make_user(), srv.make_user()
    for _ in range(2):
        assert _submit(mail, ann, ann_pw, [_remote(mail.unique("limited"))], mail.unique("limit-")) == {}
    with mail.submission() as client:
        client.login(ann, ann_pw)
        client.mail(ann)
        code, text = client.rcpt(_remote("one-too-many"))
        assert (code, text[:5]) == (450, b"4.7.1")
        assert client.rcpt(bob)[0] == 250  # mail on this server is not limited
    # Another account has its own allowance.
    assert _submit(mail, bob, bob_pw, [_remote(mail.unique("other"))], mail.unique("limit-")) == {}


def test_sending_limit_counts_recipients_not_only_messages(strict, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    # One message to many recipients must not slip past a limit that counts messages: 3 recipients an hour here.
    mail = mail_for(strict)
    ann, ann_pw = strict.make_user()
    first = [_remote(mail.unique("many")) for _ in range(3)]
    with mail.submission() as client:
        client.login(ann, ann_pw)
        client.mail(ann)
        assert [client.rcpt(r)[0] for r in first] == [250, 250, 250]
        local, _, domain = first[0].partition("@")
        assert client.rcpt(f"{local}@{domain.upper()}")[0] == 250  # the same recipient again is not one more
        code, text = client.rcpt(_remote("fourth"))
        assert code == 450 and text.startswith(b"4.7.1") and b"3 recipients per hour" in text
        # Many more past the limit are no client errors: counted, they ended the session (421) and lost the
        # three accepted ones.
        assert {client.rcpt(_remote(mail.unique("crowd")))[0] for _ in range(30)} == {450}
        assert client.data(mail.compose(mail.unique("many-"), sender=ann))[0] == 250  # for the three accepted
    for recipient in first:
        fake_mx.wait_for(recipient)
    with mail.submission() as client:  # one message sent of two, but every recipient of the hour used
        client.login(ann, ann_pw)
        client.mail(ann)
        code, text = client.rcpt(_remote(mail.unique("later")))
        assert code == 450 and b"recipients per hour" in text


def test_remote_local_parts_keep_their_case_rfc5321_section_2_4(relay, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    # Only the receiving server may treat Zed@ and zed@ as one mailbox: both are passed on.
    mail = mail_for(relay)
    ann, ann_pw = relay.make_user()
    name = mail.unique("zed")
    upper, lower = _remote(name.capitalize()), _remote(name)
    assert _submit(mail, ann, ann_pw, [upper, lower], mail.unique("case-")) == {}
    got = fake_mx.wait_for(upper)
    assert sorted(got[0].rcpt_tos) == sorted([upper, lower])


def test_parallel_sessions_cannot_pass_the_sending_limit_together(strict, mail_for) -> None:  # type: ignore[no-untyped-def]
    # Four sessions of one account each pass the check at RCPT before any has queued; the queue counts them one
    # after the other, so only the allowance (2) is queued and the others get 450 4.7.1 at the end of DATA.
    mail = mail_for(strict)
    ann, ann_pw = strict.make_user()
    sessions = []
    for _ in range(4):
        client = mail.submission()
        client.login(ann, ann_pw)
        client.mail(ann)
        assert client.rcpt(_remote(mail.unique("race")))[0] == 250
        sessions.append(client)
    replies = []
    for client in sessions:
        with client:
            code, text = client.data(mail.compose(mail.unique("race-"), sender=ann))
            replies.append((code, text[:5]))
    assert sorted(replies) == [(250, b"2.0.0")] * 2 + [(450, b"4.7.1")] * 2, replies


def _self_signed_context(tmp_path: Any) -> Any:
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smarthost.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


def test_smarthost_with_credentials_after_opportunistic_starttls_rfc3207(  # type: ignore[no-untyped-def]
        start_server, mail_for, make_fake_mx, tmp_path) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, data):  # type: ignore[no-untyped-def]
        if isinstance(data, LoginPassword):
            logins.append((data.login, data.password))
            return AuthResult(success=data.login == b"relay-user" and data.password == b"relay-secret")
        return AuthResult(success=False)

    smarthost = make_fake_mx(tls_context=_self_signed_context(tmp_path), require_starttls=True,
                             authenticator=authenticator, auth_required=True, auth_require_tls=True)
    srv = start_server(KANTOOR_DELIVERY_SMARTHOST=f"127.0.0.1:{smarthost.port}",
                       KANTOOR_DELIVERY_SMARTHOST_LOGIN="relay-user",
                       KANTOOR_DELIVERY_SMARTHOST_PASSWORD="relay-secret", **FAST_RETRIES)
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    anywhere = f"{mail.unique('x')}@anywhere.example"
    assert _submit(mail, ann, ann_pw, [anywhere], mail.unique("relayed-")) == {}
    [delivered] = smarthost.wait_for(anywhere)
    assert delivered.tls  # STARTTLS was used because it was offered
    assert logins == [(b"relay-user", b"relay-secret")]
    assert "relay-secret" not in "".join(srv.output)  # never logged


def test_swaks_submission_to_a_remote_domain(relay, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    swaks = require_tool("swaks")
    mail = mail_for(relay)
    ann, ann_pw = relay.make_user()
    friend = _remote(mail.unique("swaks"))
    result = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{relay.ports['submission']}", "--auth", "PLAIN", "--auth-user", ann,
         "--auth-password", ann_pw, "--from", ann, "--to", friend, "--header", "Subject: via swaks",
         "--pipeline", "--silent", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"Subject: via swaks" in fake_mx.wait_for(friend)[0].content


def test_two_server_processes_deliver_each_message_once(start_server, mail_for, fake_mx, postgres_url,  # type: ignore[no-untyped-def]
                                                        tmp_path) -> None:
    # ARCHITECTURE.md invariant 2: two `kantoor serve` on one PostgreSQL (and one data directory)
    # behave as one server; each queued message is claimed by exactly one of them.
    env = {**FAST_RETRIES, "KANTOOR_STORAGE_DATABASE_URL": postgres_url,
           "KANTOOR_DELIVERY_STATIC_MX": f"{REMOTE}=127.0.0.1:{fake_mx.port}"}
    first = start_server(tmp_path / "shared", **env)
    second = start_server(tmp_path / "shared", **env)
    mail = mail_for(first)
    ann, ann_pw = first.make_user()
    recipients = [_remote(mail.unique("twice")) for _ in range(12)]
    fake_mx.handler.held |= set(recipients)
    for recipient in recipients:
        assert _submit(mail, ann, ann_pw, [recipient], mail.unique("shared-")) == {}
    fake_mx.handler.held -= set(recipients)
    second.cli("queue", "retry", "--all")  # due at once, for both processes' workers
    for recipient in recipients:
        fake_mx.wait_for(recipient)
    time.sleep(1.0)  # longer than the back-off: a duplicate would have arrived by now
    assert [len(fake_mx.messages_for(r)) for r in recipients] == [1] * len(recipients)


def test_an_internal_fault_is_retried_and_expires_like_a_4xx_rfc5321_4_5_4_1(start_server, mail_for, fake_mx,  # type: ignore[no-untyped-def]
                                                                                 tmp_path) -> None:
    """A fault inside this server (here: the DKIM key file cannot be read) is a temporary failure with back-off, not a
    message stuck on its lease for ever; once the fault is repaired the message goes out exactly once."""
    srv = start_server(tmp_path / "faulty", KANTOOR_DELIVERY_STATIC_MX=f"{REMOTE}=127.0.0.1:{fake_mx.port}",
                       **FAST_RETRIES)
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    key = srv.data_dir / "dkim" / "localhost.pem"
    good = key.read_bytes()
    key.unlink()
    key.mkdir()  # reading it now fails (IsADirectoryError), as an unreadable disk would
    target = _remote(mail.unique("fault"))
    assert _submit(mail, ann, ann_pw, [target], mail.unique("faulty-")) == {}
    _wait(lambda: _attempts(srv).get(target, 0) >= 2)  # retried, and each try counted
    core = srv.core()
    assert [m.last_error.split(" ")[:2] for m in core.store.list_outbound()] == [[f"<{target}>:", "451"]]
    assert fake_mx.messages_for(target) == []
    key.rmdir()
    key.write_bytes(good)
    fake_mx.wait_for(target)
    _wait(lambda: _attempts(srv) == {})
    assert len(fake_mx.messages_for(target)) == 1


def test_one_attempt_signs_the_message_once_per_form_for_every_next_hop_rfc6376(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # One attempt for recipients at several domains (and several MX hosts) sends the same signed bytes to
    # each hop; a 7-bit conversion is a second form, signed once too. A new attempt signs afresh.
    from types import SimpleNamespace

    from kantoor.smtpd import queue_worker

    calls: list[bytes] = []

    def signed(content: bytes, domain: str, data_dir: object, selector: str) -> bytes:
        calls.append(content)
        return b"DKIM-Signature: x\r\n" + content

    monkeypatch.setattr(queue_worker, "dkim_signed", signed)
    monkeypatch.setattr(queue_worker, "to_seven_bit", lambda body: body.replace("é".encode(), b"=C3=A9"))
    worker = SimpleNamespace(settings=SimpleNamespace(data_dir=tmp_path), delivery=SimpleNamespace(dkim_selector="k"))
    body = "From: <a@example.org>\r\n\r\ncafé\r\n".encode()
    prepare = queue_worker.DeliveryWorker._prepare(worker, "a@example.org")  # type: ignore[arg-type]
    first = [prepare(body, False) for _ in range(3)]
    seven = [prepare(body, True) for _ in range(2)]
    assert first == [b"DKIM-Signature: x\r\n" + body] * 3
    assert seven == [b"DKIM-Signature: x\r\nFrom: <a@example.org>\r\n\r\ncaf=C3=A9\r\n"] * 2
    assert len(calls) == 2
    queue_worker.DeliveryWorker._prepare(worker, "a@example.org")(body, False)  # type: ignore[arg-type]
    assert len(calls) == 3


# ---------------------------------------------------------------- TLS on the way out (RFC 3207, RFC 7435)
def _recording_authenticator(logins: list[tuple[bytes, bytes]], accept: bool = True) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server, session, envelope, mechanism, data):  # type: ignore[no-untyped-def]
        if isinstance(data, LoginPassword):
            logins.append((data.login, data.password))
            return AuthResult(success=accept, handled=False)  # not handled: aiosmtpd answers 535 5.7.8
        return AuthResult(success=False, handled=False)

    return authenticator


def _queue_errors(srv: Any) -> list[str]:
    return [m.last_error for m in srv.core().store.list_outbound()]


def _bounce(mail: Any, login: str, password: str) -> str:
    """The delivery-status part of the one bounce in ``login``'s INBOX, once it is there."""
    raw = _wait(lambda: [m for m in mail.inbox(login, password) if b"Undelivered Mail Returned" in m])[0]
    return message_from_bytes(raw).get_payload()[1].as_bytes().decode()


def _with_credentials(smarthost: Any) -> dict[str, str]:
    return {"KANTOOR_DELIVERY_SMARTHOST": f"127.0.0.1:{smarthost.port}",
            "KANTOOR_DELIVERY_SMARTHOST_LOGIN": "relay-user", "KANTOOR_DELIVERY_SMARTHOST_PASSWORD": "relay-secret"}


def test_smarthost_credentials_are_never_sent_without_tls_rfc3207_section_6(  # type: ignore[no-untyped-def]
        start_server, mail_for, make_fake_mx) -> None:
    # A smarthost (or whoever is in the path, stripping STARTTLS from its EHLO reply) that offers AUTH in plain
    # text: the password would cross the network readable. Nothing is sent; the message waits (451 4.7.0), is
    # retried, and expires like any temporary failure.
    logins: list[tuple[bytes, bytes]] = []
    smarthost = make_fake_mx(authenticator=_recording_authenticator(logins), auth_required=True,
                             auth_require_tls=False)
    srv = start_server(**_with_credentials(smarthost), **FAST_RETRIES, KANTOOR_DELIVERY_EXPIRE_SECONDS="3")
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    anywhere = f"{mail.unique('x')}@anywhere.example"
    assert _submit(mail, ann, ann_pw, [anywhere], mail.unique("cleartext-")) == {}
    _wait(lambda: _attempts(srv).get(anywhere, 0) >= 2)
    assert [e.split(": ", 1)[1] for e in _queue_errors(srv)] == [
        "451 4.7.0 smarthost offers no TLS; credentials not sent"]
    status = _bounce(mail, ann, ann_pw)
    assert "Status: 4.4.7" in status and "credentials not sent" in status
    assert logins == []
    assert smarthost.messages_for(anywhere) == []


def _retried_through(smarthost: Any, start_server: Any, mail_for: Any) -> tuple[Any, str]:
    """A server relaying through ``smarthost`` with credentials, and a recipient whose message it has tried to
    deliver twice by the time this returns."""
    srv = start_server(**_with_credentials(smarthost), **FAST_RETRIES)
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    anywhere = f"{mail.unique('x')}@anywhere.example"
    assert _submit(mail, ann, ann_pw, [anywhere], mail.unique("smarthost-")) == {}
    _wait(lambda: _attempts(srv).get(anywhere, 0) >= 2)
    return srv, anywhere


def test_smarthost_credentials_get_no_plain_text_fallback_when_starttls_fails(  # type: ignore[no-untyped-def]
        start_server, mail_for, make_fake_mx, tmp_path) -> None:
    # The fall-back to plain text after a failed handshake is for opportunistic TLS only: with credentials,
    # a broken STARTTLS is a temporary failure, and the login is never sent in the clear.
    logins: list[tuple[bytes, bytes]] = []
    smarthost = _broken_starttls_mx(make_fake_mx, tmp_path, authenticator=_recording_authenticator(logins),
                                    auth_required=True, auth_require_tls=False)
    srv, anywhere = _retried_through(smarthost, start_server, mail_for)
    assert "STARTTLS failed" in _queue_errors(srv)[0]
    assert logins == [] and smarthost.messages_for(anywhere) == []


def _broken_starttls_mx(make_fake_mx: Any, tmp_path: Any, **smtp_kwargs: Any) -> Any:
    """A fake MX that offers STARTTLS and answers it with 220, then sends garbage where the TLS handshake
    should be (a broken TLS stack, or a middlebox); without STARTTLS it takes mail as usual."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    class BrokenStartTLS(SMTP):
        async def smtp_STARTTLS(self, arg: str) -> None:
            await self.push("220 2.0.0 Ready to start TLS")
            self.transport.write(b"this is not a TLS server hello\r\n" * 8)
            await asyncio.sleep(0.2)
            self.transport.close()

    class BrokenController(Controller):
        def factory(self) -> SMTP:
            return BrokenStartTLS(self.handler, **self.SMTP_kwargs)

    context = _self_signed_context(tmp_path)
    mx = make_fake_mx(tls_context=context, **smtp_kwargs)
    mx.stop()  # the same fake (handler, port, clean-up), with the broken STARTTLS
    mx.controller = BrokenController(mx.handler, hostname="127.0.0.1", port=mx.port, decode_data=False,
                                     tls_context=context, **smtp_kwargs)
    return mx.start()


def test_failed_starttls_handshake_is_retried_in_plain_text_at_once_rfc7435_section_6_2(  # type: ignore[no-untyped-def]
        start_server, mail_for, make_fake_mx, tmp_path) -> None:
    # Opportunistic TLS must not make mail less deliverable than no TLS at all (RFC 7435 section 1.3): when
    # the handshake fails, the same host is tried again without TLS in the same attempt (Postfix, level "may").
    from kantoor.storage.outbound import recipients_of

    mx = _broken_starttls_mx(make_fake_mx, tmp_path)
    srv = start_server(KANTOOR_DELIVERY_STATIC_MX=f"broken-tls.test=127.0.0.1:{mx.port}", **FAST_RETRIES)
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    friend = f"{mail.unique('friend')}@broken-tls.test"
    assert _submit(mail, ann, ann_pw, [friend], mail.unique("fallback-")) == {}
    [delivered] = mx.wait_for(friend)
    assert not delivered.tls
    _wait(lambda: _attempts(srv) == {})
    [row] = [m for m in srv.core().store.list_outbound(None) if friend in recipients_of(m)]
    assert row.attempts == 1  # in the first attempt, not on a retry


def test_smarthost_5xx_at_rcpt_bounces_that_recipient_and_4xx_is_retried_rfc5321_4_2_1(  # type: ignore[no-untyped-def]
        start_server, mail_for, make_fake_mx) -> None:
    # The smarthost answers for the recipient like any next hop: 5yz is permanent (a bounce now), 4yz temporary.
    smarthost = make_fake_mx()
    srv = start_server(KANTOOR_DELIVERY_SMARTHOST=f"127.0.0.1:{smarthost.port}", **FAST_RETRIES)
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    gone, busy = f"{mail.unique('gone')}@anywhere.example", f"{mail.unique('busy')}@anywhere.example"
    smarthost.handler.script[gone] = ["550 5.1.1 No such user at the final destination"]
    smarthost.handler.script[busy] = ["451 4.3.0 Busy"]
    assert _submit(mail, ann, ann_pw, [gone, busy], mail.unique("via-smarthost-")) == {}
    status = _bounce(mail, ann, ann_pw)
    assert f"Final-Recipient: rfc822; {gone}" in status and "Status: 5.1.1" in status
    assert busy not in status
    smarthost.wait_for(busy)  # retried, then taken
    assert smarthost.messages_for(gone) == []


def test_smarthost_refusing_our_login_is_temporary_with_its_reply_kept(  # type: ignore[no-untyped-def]
        start_server, mail_for, make_fake_mx, tmp_path) -> None:
    # A refused login (535) is this server's set-up, not the recipients': the mail waits for the administrator
    # to fix the password instead of bouncing. The smarthost's reply is the diagnostic, behind a 4yz code so a
    # "delayed" report does not carry a permanent status (RFC 3464 section 2.3.4).
    logins: list[tuple[bytes, bytes]] = []
    smarthost = make_fake_mx(tls_context=_self_signed_context(tmp_path), require_starttls=True,
                             authenticator=_recording_authenticator(logins, accept=False), auth_required=True,
                             auth_require_tls=True)
    srv, anywhere = _retried_through(smarthost, start_server, mail_for)
    [error] = _queue_errors(srv)
    assert error.startswith(f"<{anywhere}>: 451 4.7.0 ") and "535" in error
    assert logins and smarthost.messages_for(anywhere) == []


# ---------------------------------------------------------------- DKIM oversigning, expiry, queue retry
def test_dkim_oversigns_so_an_added_reply_to_or_subject_breaks_the_signature_rfc6376_section_8_15(  # type: ignore[no-untyped-def]
        tmp_path) -> None:
    # Each signed field name is listed once more than the message has it (RFC 6376 section 5.4.2): the extra
    # entry signs "no further field of this name", so one added on the way (a Reply-To pointing at the attacker,
    # a second Subject a reader may show instead) makes the signature fail rather than ride on it.
    from kantoor.smtpd.dkim_keys import generate_key, public_key_record, sign

    pem = generate_key(tmp_path, SIGNING_DOMAIN)
    message = (b"From: Ann <ann@kantoor.test>\r\nTo: bob@remote.test\r\nSubject: Invoice\r\n"
               b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@kantoor.test>\r\n\r\n"
               b"Pay to the usual account.\r\n")
    signed = sign(message, SIGNING_DOMAIN, "kantoor", pem)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return public_key_record(pem).encode()

    header, body = signed.split(b"\r\n\r\n", 1)
    assert dkim.verify(signed, dnsfunc=dnsfunc)
    assert not dkim.verify(header + b"\r\nReply-To: mallory@evil.example\r\n\r\n" + body, dnsfunc=dnsfunc)
    assert not dkim.verify(header + b"\r\nSubject: Invoice (new bank details)\r\n\r\n" + body, dnsfunc=dnsfunc)
    assert not dkim.verify(b"Cc: eve@evil.example\r\n" + signed, dnsfunc=dnsfunc)


def test_the_last_retry_is_at_the_expiry_time_not_a_back_off_step_early_rfc5321_4_5_4_1(  # type: ignore[no-untyped-def]
        start_server, mail_for, fake_mx) -> None:
    # Expiry after 3.5 s, retries every 2 s: tries at 0 and 2 s fail; the next would fall after the expiry time, so
    # it is made at 3.5 s, the expiry time itself. It succeeds here: delivered, no bounce. (Bouncing at 2 s, because
    # the next retry would be late, gave up a whole back-off step early.)
    srv = start_server(KANTOOR_DELIVERY_STATIC_MX=f"{REMOTE}=127.0.0.1:{fake_mx.port}",
                       **{**FAST_RETRIES, "KANTOOR_DELIVERY_RETRY_BASE_SECONDS": "2",
                          "KANTOOR_DELIVERY_RETRY_MAX_SECONDS": "2", "KANTOOR_DELIVERY_EXPIRE_SECONDS": "3.5"})
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    late = _remote(mail.unique("late"))
    fake_mx.handler.script[late] = ["451 4.3.0 Busy", "451 4.3.0 Still busy"]
    assert _submit(mail, ann, ann_pw, [late], mail.unique("in-time-")) == {}
    fake_mx.wait_for(late)
    _wait(lambda: _attempts(srv) == {})
    listing = srv.cli("queue", "list", "--all").stdout
    [line] = [line for line in listing.splitlines() if late in line]
    assert "\tdelivered\t" in line and "attempts 3" in line
    assert not [m for m in mail.inbox(ann, ann_pw) if b"Undelivered Mail Returned" in m]


def test_queue_retry_needs_ids_or_all_and_checks_every_id_first(start_server, mail_for, fake_mx) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    srv = start_server(KANTOOR_DELIVERY_STATIC_MX=f"{REMOTE}=127.0.0.1:{fake_mx.port}",
                       **{**FAST_RETRIES, "KANTOOR_DELIVERY_RETRY_BASE_SECONDS": "3600",
                          "KANTOOR_DELIVERY_RETRY_MAX_SECONDS": "3600"})
    mail = mail_for(srv)
    ann, ann_pw = srv.make_user()
    held = _remote(mail.unique("held"))
    fake_mx.handler.held.add(held)
    assert _submit(mail, ann, ann_pw, [held], mail.unique("waiting-")) == {}
    _wait(lambda: _attempts(srv).get(held) == 1)  # tried once, now waits an hour
    queue_id = _queued(srv)[held][0]
    # Neither ids nor --all: an error, not a silent "0 message(s) due".
    nothing = srv.cli("queue", "retry", check=False)
    assert nothing.returncode == 1 and len(nothing.stderr.strip().splitlines()) == 1
    # One bad id: nothing is changed, not even the good id before it.
    bad = srv.cli("queue", "retry", str(queue_id), "999999", check=False)
    assert bad.returncode == 1 and bad.stderr.strip() == "kantoor: no queued message 999999"
    assert srv.core().store.get_outbound(queue_id).next_attempt_at > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    fake_mx.handler.held.discard(held)
    assert srv.cli("queue", "retry", str(queue_id)).returncode == 0
    fake_mx.wait_for(held)


def test_a_slow_reply_to_the_end_of_data_is_waited_for_not_retried_rfc5321_section_4_5_3_2_6(  # type: ignore[no-untyped-def]
        tmp_path, mail_for, make_fake_mx) -> None:
    # The server that scans a message before it answers the final "." has taken it: giving up after the
    # per-command timeout (1 s here) would send it again on every retry and bounce it in the end.
    scanning = make_fake_mx()
    scanning.handler.data_delay = 2.0
    srv = launch_server(tmp_path / "data", KANTOOR_DELIVERY_STATIC_MX=f"{REMOTE}=127.0.0.1:{scanning.port}",
                        KANTOOR_DELIVERY_CONNECT_TIMEOUT_SECONDS="1", KANTOOR_DELIVERY_DATA_TIMEOUT_SECONDS="30",
                        **{k: v for k, v in FAST_RETRIES.items() if "CONNECT" not in k})
    try:
        mail = mail_for(srv)
        ann, ann_pw = srv.make_user()
        recipient = _remote(mail.unique("scanned"))
        assert _submit(mail, ann, ann_pw, [recipient], mail.unique("scanned-")) == {}
        scanning.wait_for(recipient)
        _wait(lambda: [m.state for m in srv.core().store.list_outbound(state=None)] == ["delivered"])
        row = srv.core().store.list_outbound(state=None)[0]
        assert row.attempts == 1 and len(scanning.messages_for(recipient)) == 1
    finally:
        srv.stop()
