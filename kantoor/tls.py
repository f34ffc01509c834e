"""TLS material: configured certificate paths, or a self-signed pair made at first start."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from kantoor.config import Settings


@dataclass(frozen=True)
class TLSFiles:
    certificate: Path
    private_key: Path
    generated: bool


def ensure_certificate(settings: Settings) -> TLSFiles:
    """The configured pair, or ``<data_dir>/tls/{cert,key}.pem`` (generated if missing)."""
    if settings.tls.certificate:
        cert, key = Path(settings.tls.certificate), Path(settings.tls.private_key)
        for path in (cert, key):
            if not path.is_file():
                raise FileNotFoundError(f"tls: {path} does not exist")
        return TLSFiles(cert, key, False)
    folder = settings.data_dir / "tls"
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.is_file() and key.is_file():
        return TLSFiles(cert, key, False)
    folder.mkdir(parents=True, exist_ok=True)
    _generate_self_signed(cert, key, settings.server.hostname)
    return TLSFiles(cert, key, True)


def _generate_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kantoor (self-signed)")])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.IPAddress(ipaddress.ip_address("::1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    os.replace(tmp_key, key_path)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def server_ssl_context(files: TLSFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(files.certificate), str(files.private_key))
    return context
