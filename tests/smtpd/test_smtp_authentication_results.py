"""Authentication-Results (RFC 8601) on mail received by the MX: SPF (RFC 7208), DKIM (RFC 6376)
and DMARC (RFC 7489), looked up in a fake zone served by a DNS server in the test process."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import dkim
import dns.message
import dns.rcode
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class FakeZone:
    """A UDP DNS server answering from ``records[(name, type)] = [text, …]``; everything else is NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - not a query
                continue
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().lower()
            rtype = dns.rdatatype.to_text(question.rdtype)
            answers = self.records.get((name, rtype))
            if answers:
                response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", rtype, answers))
            elif not any(n == name for n, _ in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def zone() -> Iterator[FakeZone]:
    fake = FakeZone()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def signing_key(zone: FakeZone) -> bytes:
    """sender.test: SPF allows 127.0.0.1, a DKIM key, DMARC p=reject; liar.test: SPF allows nobody."""
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
    })
    return pem


@pytest.fixture(scope="module")
def mx_server(zone: FakeZone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
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
    assert "dkim=none" in results or "dkim=fail" in results, results
