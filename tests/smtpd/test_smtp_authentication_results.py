"""Authentication-Results (RFC 8601) on mail received by the MX: SPF (RFC 7208), DKIM (RFC 6376)
and DMARC (RFC 7489), looked up in a fake zone served by a DNS server in the test process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@pytest.fixture(scope="module")
def signing_key(zone: Any) -> bytes:
    """sender.test: SPF allows 127.0.0.1, a DKIM key, DMARC p=reject; liar.test: SPF allows nobody;
    soft.test: SPF ~all (softfail), DMARC p=none."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    p = base64.b64encode(public).decode()
    chunks = " ".join(f'"{p[i:i + 200]}"' for i in range(0, len(p), 200))
    zone.records.update({
        ("sender.test.", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
        ("sel._domainkey.sender.test.", "TXT"): [f'"v=DKIM1; k=rsa; p=" {chunks}'],
        ("_dmarc.sender.test.", "TXT"): ['"v=DMARC1; p=reject"'],
        ("liar.test.", "TXT"): ['"v=spf1 -all"'],
        ("_dmarc.liar.test.", "TXT"): ['"v=DMARC1; p=reject"'],
        ("soft.test.", "TXT"): ['"v=spf1 ip4:192.0.2.1 ~all"'],
        ("_dmarc.soft.test.", "TXT"): ['"v=DMARC1; p=none"'],
    })
    return pem


@pytest.fixture(scope="module")
def mx_server(zone: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from harness import launch_server

    proc = launch_server(tmp_path_factory.mktemp("authres") / "data",
                         KANTOOR_DELIVERY_DNS_NAMESERVERS=f"127.0.0.1:{zone.port}")
    try:
        yield proc
    finally:
        proc.stop()


def _message(sender: str, subject: str) -> bytes:
    return (f"From: <{sender}>\r\nTo: <you@localhost>\r\nSubject: {subject}\r\n"
            f"Date: Thu, 26 Nov 2026 05:00:00 +0000\r\nMessage-ID: <{subject}@sender.test>\r\n\r\nHello.\r\n").encode()


def _auth_results(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    fields = re.findall(r"^Authentication-Results:(.*(?:\r\n[ \t].*)*)", head, re.MULTILINE)
    assert len(fields) == 1, head
    return " ".join(fields[0].split())


def test_signed_aligned_mail_passes_spf_dkim_and_dmarc_rfc8601_section_2(mx_server, mail_for, signing_key) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(mx_server)
    login, password = mx_server.make_user()
    subject = mail.unique("signed-")
    message = _message("alice@sender.test", subject)
    signed = dkim.sign(message, b"sel", b"sender.test", signing_key, include_headers=[b"from", b"subject"]) + message
    with mail.mx() as client:
        assert client.sendmail("alice@sender.test", [login], signed) == {}
    results = _auth_results(mail.received(login, password, subject))
    assert results.startswith("localhost;"), results  # the authserv-id is the server's host name
    assert "spf=pass" in results and "dkim=pass" in results and "dmarc=pass" in results, results
    assert "header.d=sender.test" in results or "header.i=@sender.test" in results, results


def test_forged_sender_fails_spf_and_dmarc_and_a_forged_header_is_removed_rfc8601_section_5(  # type: ignore[no-untyped-def]
        mx_server, mail_for, signing_key) -> None:
    mail = mail_for(mx_server)
    login, password = mx_server.make_user()
    subject = mail.unique("forged-")
    forged = b"Authentication-Results: localhost; spf=pass; dkim=pass; dmarc=pass\r\n" + _message(
        "ceo@liar.test", subject)
    with mail.mx() as client:
        assert client.sendmail("ceo@liar.test", [login], forged) == {}
    results = _auth_results(mail.received(login, password, subject))
    assert "spf=fail" in results and "dmarc=fail" in results, results
    assert "dkim=none" in results and "dkim=fail" not in results, results  # not signed: none (RFC 8601 2.7.1)


def test_every_form_of_a_forged_field_with_our_id_is_removed_rfc8601_section_5() -> None:
    # As a reader parses a field: folded, a comment first, the id quoted, blanks before the colon (RFC 5322 4.5),
    # in a message that is all header; a field of another authserv-id, and the body, stay as they are.
    from kantoor.smtpd.authresults import strip_forged

    forged = [b"Authentication-Results:\r\n localhost; dkim=pass", b"Authentication-Results: (trust me) localhost; x",
              b'Authentication-Results: "LocalHost"; dkim=pass', b"Authentication-Results : localhost; dkim=pass",
              b"authentication-results: (a \\) (b)) localhost;\r\n\tdmarc=pass",
              b"Authentication-Results: LOCALHOST.; dkim=pass"]  # the same host name, absolute
    kept = b"Authentication-Results: mx.example.org; spf=pass\r\nSubject: x\r\n"
    for field in forged:
        assert strip_forged(field + b"\r\n" + kept + b"\r\nAuthentication-Results: localhost; body\r\n",
                            "localhost") == kept + b"\r\nAuthentication-Results: localhost; body\r\n", field
        assert strip_forged(kept + field + b"\r\n", "localhost") == kept, field  # no body at all
    other = b"Authentication-Results: localhost.evil.example; dkim=pass\r\n\r\nb\r\n"
    assert strip_forged(other, "localhost") == other


def test_a_message_without_from_keeps_its_spf_and_dkim_results_and_dmarc_is_permerror_rfc7489_6_6_1(  # type: ignore[no-untyped-def]
        mx_server, mail_for, signing_key) -> None:
    # DMARC needs the From domain; its absence must not throw away what SPF and DKIM found.
    mail = mail_for(mx_server)
    login, password = mx_server.make_user()
    subject = mail.unique("fromless-")
    fromless = f"To: {login}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@liar.test>\r\n\r\nHi.\r\n".encode()
    with mail.mx() as client:
        assert client.sendmail("ceo@liar.test", [login], fromless) == {}
    results = _auth_results(mail.received(login, password, subject))
    assert "spf=fail" in results and "dkim=none" in results and "dmarc=permerror" in results, results


def test_spf_softfail_is_reported_rfc7208_section_2_6_5(mx_server, mail_for, signing_key) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(mx_server)
    login, password = mx_server.make_user()
    subject = mail.unique("soft-")
    with mail.mx() as client:
        assert client.sendmail("news@soft.test", [login], _message("news@soft.test", subject)) == {}
    results = _auth_results(mail.received(login, password, subject))
    assert "spf=softfail" in results, results
    assert "dmarc=fail" in results, results  # no aligned pass from SPF or DKIM


def test_altered_signed_mail_fails_dkim_rfc6376_section_6_1_3(mx_server, mail_for, signing_key) -> None:  # type: ignore[no-untyped-def]
    mail = mail_for(mx_server)
    login, password = mx_server.make_user()
    subject = mail.unique("altered-")
    message = _message("alice@sender.test", subject)
    signed = dkim.sign(message, b"sel", b"sender.test", signing_key, include_headers=[b"from", b"subject"]) + message
    tampered = signed.replace(b"Hello.", b"Send money.")  # the body hash no longer matches
    with mail.mx() as client:
        assert client.sendmail("alice@sender.test", [login], tampered) == {}
    results = _auth_results(mail.received(login, password, subject))
    assert "dkim=fail" in results, results
    assert "spf=pass" in results and "dmarc=pass" in results, results  # SPF alone is aligned


def test_each_dkim_signature_gets_a_result_and_dmarc_passes_on_an_aligned_one_rfc8601_rfc7489_4_2(  # type: ignore[no-untyped-def]
        mx_server, mail_for, signing_key) -> None:
    """A message signed twice, first by a domain whose key is not published, then by the From domain:
    one dkim= result per signature, and DMARC passes on the second (SPF is not aligned: the envelope sender
    is another domain)."""
    mail = mail_for(mx_server)
    login, password = mx_server.make_user()
    subject = mail.unique("twice-")
    message = _message("alice@sender.test", subject)
    signed = dkim.sign(message, b"sel", b"sender.test", signing_key, include_headers=[b"from", b"subject"]) + message
    signed = dkim.sign(signed, b"sel", b"unpublished.test", signing_key, include_headers=[b"from"]) + signed
    with mail.mx() as client:
        assert client.sendmail("bounces@liar.test", [login], signed) == {}
    results = _auth_results(mail.received(login, password, subject))
    assert "spf=fail" in results, results
    assert re.search(r"dkim=fail[^;]*header\.d=unpublished\.test", results), results
    assert re.search(r"dkim=pass[^;]*header\.d=sender\.test", results), results
    assert "dmarc=pass" in results, results


def test_at_most_five_signatures_are_verified_rfc6376_section_6_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """A verifier may limit the signatures it checks (each an RSA verification and a DNS look-up): of eight,
    the first five get a result; an unsigned message gets dkim=none without any verification."""
    from kantoor.smtpd import authresults

    tried: list[int] = []

    def verify(self: dkim.DKIM, idx: int = 0, dnsfunc: Any = None) -> bool:
        tried.append(idx)
        self.signature_fields = {b"d": f"d{idx}.test".encode()}
        return idx == 1

    monkeypatch.setattr(dkim.DKIM, "verify", verify)
    head = "".join(f"DKIM-Signature: v=1; a=rsa-sha256; d=d{n}.test; s=s; h=from; bh=x; b=y\r\n" for n in range(8))
    results = authresults._dkim_results((head + "From: <a@d1.test>\r\n\r\nHello.\r\n").encode())
    assert tried == [0, 1, 2, 3, 4]
    assert [(r.result, r.header_d) for r in results] == [
        ("fail", "d0.test"), ("pass", "d1.test"), ("fail", "d2.test"), ("fail", "d3.test"), ("fail", "d4.test")]
    tried.clear()
    assert [r.result for r in authresults._dkim_results(b"From: <a@d1.test>\r\n\r\nHello.\r\n")] == ["none"]
    assert tried == []
