"""Which domain's key signs outgoing mail: the From: domain first, for DMARC alignment (RFC 7489 section 3.1.1)."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest

from kantoor.smtpd.dkim_keys import generate_key, load_key, public_key_record
from kantoor.smtpd.outgoing import dkim_signed, from_domain

SELECTOR = "kantoor"


def _message(from_field: bytes) -> bytes:
    return (b"From: " + from_field + b"\r\nTo: bob@remote.test\r\nSubject: hi\r\n"
            b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\nMessage-ID: <1@a.test>\r\n\r\nhello\r\n")



def _signer(signed: bytes) -> str:
    """The d= tag of the DKIM-Signature field on top."""
    assert signed.startswith(b"DKIM-Signature:")
    first, *rest = signed.split(b"\r\n")
    field = first
    for line in rest:  # its continuation lines
        if line[:1] not in (b" ", b"\t"):
            break
        field += line
    tags = dkim.util.parse_tag_value(field.split(b":", 1)[1].replace(b"\r\n", b""))
    return tags[b"d"].decode()


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[Path, dict[bytes, bytes]]:
    records = {}
    for domain in ("a.test", "b.test"):
        pem = generate_key(tmp_path, domain)
        records[f"{SELECTOR}._domainkey.{domain}.".encode()] = public_key_record(pem).encode()
    return tmp_path, records


def _verifies(signed: bytes, records: dict[bytes, bytes]) -> bool:
    return bool(dkim.verify(signed, dnsfunc=lambda name, timeout=5: records.get(name, b"")))


def test_an_alias_in_another_domain_is_signed_by_its_from_domain(keys) -> None:  # type: ignore[no-untyped-def]
    data_dir, records = keys
    signed = dkim_signed(_message(b"Ann <ann@b.test>"), "ann@a.test", data_dir, SELECTOR)
    assert _signer(signed) == "b.test" and _verifies(signed, records)
    signed = dkim_signed(_message(b"ann@a.test"), "ann@b.test", data_dir, SELECTOR)
    assert _signer(signed) == "a.test" and _verifies(signed, records)


def test_a_from_domain_without_a_key_falls_back_to_the_envelope_senders(keys) -> None:  # type: ignore[no-untyped-def]
    data_dir, records = keys
    signed = dkim_signed(_message(b"ann@c.test"), "ann@a.test", data_dir, SELECTOR)
    assert _signer(signed) == "a.test" and _verifies(signed, records)
    unsigned = _message(b"ann@c.test")
    assert dkim_signed(unsigned, "ann@c.test", data_dir, SELECTOR) is unsigned  # no key at all: sent unsigned


def test_a_key_an_earlier_version_kept_under_the_u_label_is_found_and_moved(tmp_path: Path) -> None:
    pem = generate_key(tmp_path, "plain.test")
    legacy = tmp_path / "dkim" / "b\u00fccher.test.pem"  # the name earlier versions stored and keyed by
    (tmp_path / "dkim" / "plain.test.pem").rename(legacy)
    assert load_key(tmp_path, "xn--bcher-kva.test") == pem
    assert not legacy.exists() and (tmp_path / "dkim" / "xn--bcher-kva.test.pem").read_bytes() == pem


def test_the_servers_own_mail_with_a_folded_from_is_signed(keys) -> None:  # type: ignore[no-untyped-def]
    data_dir, records = keys
    message = _message(b"Mail Delivery System\r\n <postmaster@b.test>")
    assert from_domain(message) == "b.test"
    signed = dkim_signed(message, "", data_dir, SELECTOR)  # the null envelope sender of a bounce
    assert _signer(signed) == "b.test" and _verifies(signed, records)
