"""DKIM (RFC 6376): one signing key per mail domain, the DNS records to publish, signing.

Keys live in the data directory (``<data_dir>/dkim/<domain>.pem``, mode 0600),
beside the blob store that several server processes share anyway. RSA 2048 with
SHA-256 (RFC 8301); the selector comes from the delivery settings.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import dkim
import idna
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kantoor.storage.accounts import domain_name

# Headers signed: the ones RFC 6376 section 5.4.1 recommends and that a forwarder should not touch.
SIGNED_HEADERS = [b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"in-reply-to",
                  b"references", b"mime-version", b"content-type", b"content-transfer-encoding"]


def key_path(data_dir: Path, domain: str) -> Path:
    """Where the domain's key is: named by its :func:`domain_name` spelling (ValueError if it has none), so
    a U-label and an A-label From: domain find the same key, and no odd character reaches a file name. A key
    an earlier version kept under the U-label spelling is moved here on the way."""
    name = domain_name(domain)
    path = data_dir / "dkim" / f"{name}.pem"
    if name.startswith("xn--") or ".xn--" in name:
        _adopt_legacy_key(path, name)
    return path


def _adopt_legacy_key(path: Path, name: str) -> None:
    """Earlier versions named an internationalized domain's key file by the U-label spelling they stored:
    renamed to the A-label one, so the key DNS publishes keeps signing (a new one would not match it)."""
    if path.exists():
        return
    try:
        legacy = path.with_name(f"{idna.decode(name)}.pem")
    except (idna.IDNAError, UnicodeError):
        return
    if legacy != path and legacy.exists():
        os.replace(legacy, path)


def load_key(data_dir: Path, domain: str) -> bytes | None:
    """The domain's private key (PEM), or None if it has none."""
    try:
        return key_path(data_dir, domain).read_bytes()
    except (FileNotFoundError, ValueError):
        return None


def generate_key(data_dir: Path, domain: str, replace: bool = False) -> bytes:
    """Create the domain's key unless it has one (or ``replace``); returns the private key PEM."""
    path = key_path(data_dir, domain)
    if path.exists() and not replace:
        return path.read_bytes()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # PKCS#1 ("RSA PRIVATE KEY"): the form dkimpy reads.
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)
    return pem


def public_key_record(private_pem: bytes) -> str:
    """The TXT value of ``<selector>._domainkey.<domain>`` for this key."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def dns_records(domain: str, hostname: str, selector: str, private_pem: bytes) -> list[str]:
    """Zone-file lines the administrator publishes: MX, SPF, DKIM, DMARC; names in ASCII (A-labels)."""
    domain = domain_name(domain)
    hostname = _zone_host(hostname)
    dkim_value = public_key_record(private_pem)
    # TXT strings are at most 255 characters each (RFC 1035 section 3.3.14): split the key.
    chunks = " ".join(f'"{dkim_value[i:i + 250]}"' for i in range(0, len(dkim_value), 250))
    return [
        f"{domain}.\tIN\tMX\t10 {hostname}.",
        f'{domain}.\tIN\tTXT\t"v=spf1 mx a:{hostname} -all"',
        f"{selector}._domainkey.{domain}.\tIN\tTXT\t( {chunks} )",
        f'_dmarc.{domain}.\tIN\tTXT\t"v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:postmaster@{domain}"',
    ]


def _zone_host(hostname: str) -> str:
    """The server's host name as a zone file names it (A-labels); a setting that is no host name is printed as
    given rather than stopping `kantoor domain add` after the domain was added (the settings own its checks)."""
    try:
        return domain_name(hostname)
    except ValueError:
        return hostname.rstrip(".")


def sign(message: bytes, domain: str, selector: str, private_pem: bytes) -> bytes:
    """``message`` with a DKIM-Signature header on top (relaxed/relaxed, rsa-sha256).

    Every name of SIGNED_HEADERS is listed once more than the message has such fields (RFC 6376 sections
    5.4.2 and 8.15, "oversigning"): the extra entry signs the field's absence, so a Reply-To or a second
    Subject added on the way breaks the signature instead of riding on it.
    """
    counts: dict[bytes, int] = {}
    for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if b":" in line and line[:1] not in (b" ", b"\t"):  # a field's first line, not a continuation
            name = line.split(b":", 1)[0].strip().lower()
            counts[name] = counts.get(name, 0) + 1
    headers = [h for h in SIGNED_HEADERS for _ in range(counts.get(h, 0) + 1)]
    signature = dkim.sign(message, selector.encode("ascii"), domain_name(domain).encode("ascii"), private_pem,
                          canonicalize=(b"relaxed", b"relaxed"), include_headers=headers)
    return signature + message
