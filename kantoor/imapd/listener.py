"""Start the IMAP listeners: plain (with STARTTLS) and implicit TLS (RFC 8314)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet import ssl
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory

from kantoor.accept_balance import Balancing
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


def _adopt(reactor: Any, sock: socket.socket, factory: Factory) -> IListeningPort:
    # Twisted takes its own duplicate of the descriptor; ours is closed after.
    sock.listen(LISTEN_BACKLOG)
    port = reactor.adoptStreamPort(sock.fileno(), sock.family, factory)
    sock.close()
    return port


LISTEN_BACKLOG = 128


def listen(reactor: Any, settings: Settings, store: Store, authenticator: Authenticator, quota: QuotaEngine,
           certificate: Path, private_key: Path,
           sockets: Mapping[str, socket.socket],
           balancing: Balancing | None = None) -> list[tuple[str, IListeningPort]]:
    """Serve ``sockets["imap"]`` (plain, STARTTLS offered) and ``sockets["imaps"]`` (implicit TLS).

    The sockets are bound by the server (kantoor.listening); Twisted only listens on them, or, with
    ``balancing`` (several server processes on shared listening sockets), gets the connections this
    process accepts.
    """
    options = tls_options(certificate, private_key)

    def factory(implicit_tls: bool) -> IMAPFactory:
        return IMAPFactory(ServerContext(reactor, settings, store, authenticator, quota, options, implicit_tls))

    def serve(sock: socket.socket, factory: Factory) -> IListeningPort:
        if balancing is not None:
            return balancing.serve_twisted(reactor, sock, factory)  # type: ignore[return-value]
        return _adopt(reactor, sock, factory)

    plain = serve(sockets["imap"], factory(False))
    # What listenSSL does: TLS in memory on top of a TCP port.
    secure = serve(sockets["imaps"], TLSMemoryBIOFactory(options, False, factory(True)))
    return [("imap", plain), ("imaps", secure)]
