"""Start the IMAP listeners: plain (with STARTTLS) and implicit TLS (RFC 8314)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import ssl
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.imapd.protocol import KantoorIMAPServer, ServerContext
from kantoor.quota import QuotaEngine
from kantoor.storage import Store


class IMAPFactory(Factory):
    def __init__(self, context: ServerContext) -> None:
        self.context = context

    def buildProtocol(self, addr: Any) -> Protocol:  # noqa: N802 (Twisted's name)
        protocol = KantoorIMAPServer(self.context)
        protocol.factory = self
        return protocol


def tls_options(certificate: Path, private_key: Path) -> ssl.CertificateOptions:
    """Twisted TLS options from the PEM pair (TLS 1.2 or newer)."""
    pem = Path(private_key).read_bytes() + b"\n" + Path(certificate).read_bytes()
    pair = ssl.PrivateCertificate.loadPEM(pem)
    return ssl.CertificateOptions(privateKey=pair.privateKey.original, certificate=pair.original,
                                  raiseMinimumTo=ssl.TLSVersion.TLSv1_2)


def listen(reactor: Any, settings: Settings, store: Store, authenticator: Authenticator, quota: QuotaEngine,
           certificate: Path, private_key: Path) -> list[tuple[str, IListeningPort]]:
    """Listen on ``ports.imap`` (plain, STARTTLS offered) and ``ports.imaps`` (implicit TLS)."""
    options = tls_options(certificate, private_key)
    host = settings.server.host

    def factory(implicit_tls: bool) -> IMAPFactory:
        return IMAPFactory(ServerContext(reactor, settings, store, authenticator, quota, options, implicit_tls))

    plain = reactor.listenTCP(settings.ports.imap, factory(False), interface=host)
    secure = reactor.listenSSL(settings.ports.imaps, factory(True), options, interface=host)
    return [("imap", plain), ("imaps", secure)]
