"""New connections spread evenly over the server processes (``server.processes`` > 1).

With SO_REUSEPORT the kernel picks the process of a new connection by a hash of its
addresses, blind to how busy each one is: eight long SMTP or IMAP sessions from one
client landed 5/3 or 6/2 on two processes in 10 of 12 tries, and the process with the
larger share ran out of its one core (the GIL) while the other waited. Postfix gives
each session a process of its own; a Kantoor process serves many, so the sessions
must be shared out.

So the supervisor binds and listens on each port once, and every worker process
inherits the same listening socket and accepts from it itself, one connection at a
time, on its event loop. A worker that serves more connections than the least busy of
its siblings (a table in shared memory in which each worker keeps its own count)
leaves a waiting connection to that sibling, and takes it itself only if it still
waits :data:`DEFER_SECONDS` later — a busy or stuck sibling never keeps a client
waiting longer. The accepted socket is handed to the protocol's own listener code:
``loop.connect_accepted_socket`` for the asyncio ones (aiosmtpd, uvicorn) and
``adoptStreamConnection`` for Twisted (IMAP). A bonus over SO_REUSEPORT: the
connections queued when a worker dies stay in the one queue for the others, where
each SO_REUSEPORT socket took its own queue with it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import mmap
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any

log = logging.getLogger("kantoor.accept")

# How long a worker with more connections than a sibling leaves a new one to that sibling (an idle
# sibling takes it within microseconds; one busy with a request within a few milliseconds).
DEFER_SECONDS = 0.05
# How often a deferring worker looks again whether it is still the busier one.
RECHECK_SECONDS = 0.001
# A sibling that let a connection wait DEFER_SECONDS is not waited for again this long.
DISTRUST_SECONDS = 1.0
# A slot's value while its worker does not accept (starting, or gone): never waited for.
NOT_ACCEPTING = -1
# After an accept() error such as EMFILE (out of descriptors): pause before trying again,
# instead of spinning on a socket that stays readable.
ERROR_PAUSE_SECONDS = 0.1
_SLOT = struct.Struct("q")


class ConnectionTable:
    """The connections each worker serves, one 8-byte slot per worker, in memory shared across fork.

    Only a slot's own worker writes it (aligned 8-byte stores, read whole); the others only read —
    except the supervisor, which marks a dead worker's slot :data:`NOT_ACCEPTING` before it forks the
    replacement. Created by the supervisor before it forks, so every worker maps the same page.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        self.workers = workers
        self._memory = mmap.mmap(-1, _SLOT.size * workers)  # MAP_SHARED | MAP_ANONYMOUS
        for slot in range(workers):
            self.set(slot, NOT_ACCEPTING)

    def set(self, slot: int, count: int) -> None:
        _SLOT.pack_into(self._memory, slot * _SLOT.size, count)

    def get(self, slot: int) -> int:
        return int(_SLOT.unpack_from(self._memory, slot * _SLOT.size)[0])

    def fewest_besides(self, slot: int) -> int | None:
        """The smallest count of any other worker that accepts (None if none does)."""
        others = [count for i in range(self.workers) if i != slot and (count := self.get(i)) != NOT_ACCEPTING]
        return min(others) if others else None


class WorkerConnections:
    """This worker's count in the table: one more per accepted connection, one less when it ends.

    The slot says :data:`NOT_ACCEPTING` until the worker's first listener starts (:meth:`accepting`):
    a worker still starting up must not make its siblings leave connections to it."""

    def __init__(self, table: ConnectionTable, slot: int) -> None:
        self.table = table
        self.slot = slot
        self.count = 0
        self._accepting = False

    def accepting(self) -> None:
        self._accepting = True
        self.table.set(self.slot, self.count)

    def stopped(self) -> None:
        """This worker accepts no more (it is stopping): its siblings take everything."""
        self._accepting = False
        self.table.set(self.slot, NOT_ACCEPTING)

    def _publish(self) -> None:
        if self._accepting:
            self.table.set(self.slot, self.count)

    def opened(self) -> Callable[[], None]:
        """Count one connection; returns its release, which counts it off once however often it is called."""
        self.count += 1
        self._publish()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.count -= 1
                self._publish()
        return release

    def more_than_a_sibling(self) -> bool:
        fewest = self.table.fewest_besides(self.slot)
        return fewest is not None and self.count > fewest


class BalancedListener:
    """Accepts from a listening socket shared with the sibling workers and hands each connection over.

    ``hand_over(sock, release)`` gets the accepted non-blocking socket and must call ``release()``
    when that connection ends (or if it never gets going). Offers what the server's shutdown
    uses of the listeners it replaces: ``close()``/``wait_closed()`` (asyncio servers),
    ``stopListening()`` (Twisted ports) and ``sockets``/``getHost()`` for the port.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, connections: WorkerConnections,
                 hand_over: Callable[[socket.socket, Callable[[], None]], None]) -> None:
        self._loop = loop
        self._sock = sock
        self._connections = connections
        self._hand_over = hand_over
        self._timer: asyncio.TimerHandle | None = None
        self._give_up_at = 0.0  # when a connection left to a sibling is taken anyway
        self._trust_siblings_at = 0.0  # before this, connections are not left to siblings
        self._reading = False
        self._closed = False
        sock.setblocking(False)
        self.sockets = [sock]
        connections.accepting()
        self._watch()

    def _watch(self) -> None:
        if not self._closed and not self._reading:
            self._loop.add_reader(self._sock.fileno(), self._readable)
            self._reading = True

    def _unwatch(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sock.fileno())
            self._reading = False

    def _readable(self) -> None:
        if self._loop.time() >= self._trust_siblings_at and self._connections.more_than_a_sibling():
            # Every worker is woken for a new connection; a less busy sibling will most likely take it.
            self._unwatch()
            self._give_up_at = self._loop.time() + DEFER_SECONDS
            self._timer = self._loop.call_later(RECHECK_SECONDS, self._recheck)
            return
        self._take()

    def _recheck(self) -> None:
        """While leaving a connection to a sibling: take it once this worker is no longer the busier one
        (siblings that defer to each other in a burst take turns), or once it waited DEFER_SECONDS."""
        self._timer = None
        if self._closed:
            return
        now = self._loop.time()
        if self._connections.more_than_a_sibling() and now < self._give_up_at:
            self._timer = self._loop.call_later(RECHECK_SECONDS, self._recheck)
            return
        if self._take() and now >= self._give_up_at:
            # The sibling let it wait: it is busy or stuck. Stop leaving connections to it for a while, or each
            # one would wait DEFER_SECONDS.
            self._trust_siblings_at = now + DISTRUST_SECONDS
        if self._timer is None:  # (not pausing after an accept error)
            self._watch()

    def _later(self, seconds: float) -> None:
        self._unwatch()
        if self._timer is None:
            self._timer = self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        self._timer = None
        self._watch()

    def _take(self) -> bool:
        """Accept one connection and hand it over; False if none was waiting (or accept failed)."""
        try:
            conn, _address = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return False  # a sibling took it
        except OSError as exc:
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                return True  # the client gave up while it waited; there may be more
            log.warning("accepting a connection failed: %s", exc.strerror)
            self._later(ERROR_PAUSE_SECONDS)  # e.g. EMFILE: let connections end before trying again
            return False
        conn.setblocking(False)
        release = self._connections.opened()
        try:
            self._hand_over(conn, release)
        except Exception:
            release()
            conn.close()
            log.exception("handing over a connection failed")
        return True

    # -- what the server's shutdown calls
    def close(self) -> None:
        """Stop accepting (connections already handed over go on). The shared socket stays open for the
        siblings; this process's copy is closed."""
        if self._closed:
            return
        self._closed = True
        self._connections.stopped()
        self._unwatch()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._sock.close()

    async def wait_closed(self) -> None:
        return None

    def is_serving(self) -> bool:
        return not self._closed

    def stopListening(self) -> None:  # noqa: N802 - Twisted's IListeningPort name
        self.close()

    def getHost(self) -> Any:  # noqa: N802 - Twisted's IListeningPort name
        from twisted.internet.address import IPv4Address, IPv6Address

        host, port = self._sock.getsockname()[:2]
        return (IPv6Address if self._sock.family == socket.AF_INET6 else IPv4Address)("TCP", host, port)


class Balancing:
    """A worker's way of serving the listening sockets it shares with its siblings."""

    def __init__(self, table: ConnectionTable, slot: int) -> None:
        self.connections = WorkerConnections(table, slot)
        self._starting: set[asyncio.Task[None]] = set()  # connections being set up (TLS handshakes): kept alive

    def serve_asyncio(self, sock: socket.socket, protocol_factory: Callable[[], asyncio.Protocol],
                      ssl_context: ssl.SSLContext | None = None) -> BalancedListener:
        """What ``loop.create_server(protocol_factory, sock=sock, ssl=ssl_context)`` does, balanced."""
        loop = asyncio.get_running_loop()

        def hand_over(conn: socket.socket, release: Callable[[], None]) -> None:
            def counted() -> asyncio.Protocol:
                protocol = protocol_factory()
                lost = protocol.connection_lost

                def connection_lost(exc: Exception | None) -> None:
                    release()
                    lost(exc)
                protocol.connection_lost = connection_lost  # type: ignore[method-assign]
                return protocol

            async def adopt() -> None:
                try:
                    # With TLS this returns after the handshake; a failed handshake never reaches the protocol.
                    await loop.connect_accepted_socket(counted, conn, ssl=ssl_context)
                except OSError:  # reset, TLS handshake refused or timed out: nothing will report its end
                    release()
                    conn.close()
                except Exception:
                    release()
                    conn.close()
                    log.exception("starting a connection failed")
            task = loop.create_task(adopt())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

        return BalancedListener(loop, sock, self.connections, hand_over)

    def serve_twisted(self, reactor: Any, sock: socket.socket, factory: Any) -> BalancedListener:
        """What ``reactor.adoptStreamPort`` on ``sock`` does, balanced."""

        def hand_over(conn: socket.socket, release: Callable[[], None]) -> None:
            original = factory.buildProtocol

            # The outermost protocol (TLS's, for IMAPS) is what the transport tells of the end.
            def build(address: Any) -> Any:
                protocol = original(address)
                if protocol is not None:
                    lost = protocol.connectionLost

                    def connection_lost(reason: Any) -> None:
                        release()
                        lost(reason)
                    protocol.connectionLost = connection_lost
                return protocol

            counted = _FactoryWith(factory, build)
            try:
                reactor.adoptStreamConnection(conn.fileno(), conn.family, counted)  # Twisted takes a duplicate
            finally:
                conn.close()
            if not counted.built:  # the factory refused the connection: nothing will report its end
                release()

        return BalancedListener(asyncio.get_running_loop(), sock, self.connections, hand_over)


class _FactoryWith:
    """``factory`` with its ``buildProtocol`` replaced for one adopted connection."""

    def __init__(self, factory: Any, build: Callable[[Any], Any]) -> None:
        self._factory = factory
        self._build = build
        self.built = False

    def buildProtocol(self, address: Any) -> Any:  # noqa: N802 - Twisted's name
        protocol = self._build(address)
        self.built = protocol is not None
        return protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory, name)


__all__ = ["Balancing", "BalancedListener", "ConnectionTable", "DEFER_SECONDS", "NOT_ACCEPTING", "WorkerConnections"]
