"""The server's listening sockets, bound in one place for every protocol.

``kantoor serve`` binds each port here and hands the socket to the protocol's
listener (Twisted, aiosmtpd, uvicorn), so there is one rule for addresses and
reuse. With several server processes (``server.processes``) the supervisor binds
and listens once (:func:`listen_all`) and every worker accepts from the same
sockets, balanced by kantoor.accept_balance; a worker that stops leaves the
connections still queued to the others.
"""

from __future__ import annotations

import socket

from kantoor.config import Settings

# Every listener, in the order the server starts them; names are PortSettings fields.
LISTENER_NAMES = ("imap", "imaps", "smtp", "submission", "submissions", "http", "https")


# Connections the kernel queues for a shared listening socket before a worker accepts them.
SHARED_BACKLOG = 1024


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: any free port), not yet listening, non-blocking.

    Raises OSError (e.g. address in use) with the address in the message.
    """
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Restarting right after a stop must not wait for TIME_WAIT connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"{host}:{port}: {exc.strerror}") from exc
    return sock


def bind_all(settings: Settings) -> dict[str, socket.socket]:
    """One bound socket per listener, at the configured ports; all or none (closed again on failure)."""
    sockets: dict[str, socket.socket] = {}
    try:
        for name in LISTENER_NAMES:
            sockets[name] = bind_listener(settings.server.host, getattr(settings.ports, name))
    except BaseException:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


def listen_all(sockets: dict[str, socket.socket], backlog: int = SHARED_BACKLOG) -> None:
    """Start listening on every socket now (shared ones: before the workers that accept from them exist)."""
    for sock in sockets.values():
        sock.listen(backlog)


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])
