"""The three SMTP listeners and the outbound delivery worker, on the server's running asyncio loop.

``smtp``: MX (inbound from other servers), STARTTLS offered, AUTH optional.
``submission``: STARTTLS offered, AUTH required before MAIL.
``submissions``: the same with implicit TLS (RFC 8314).
Beside them run the outbound delivery worker and the mailbox-usage warning task.
aiosmtpd's Controller would start its own thread and loop; we want the one loop
every protocol shares, so the ``SMTP`` protocol class goes straight to
``loop.create_server``. The delivery worker lives as long as the MX listener:
closing that listener (server shutdown) stops the worker (and the warning task) too.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from kantoor.accept_balance import Balancing
from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.quota import QuotaEngine
from kantoor.smtpd import org_domain
from kantoor.smtpd.authresults import use_name_servers
from kantoor.smtpd.connection_limits import ConnectionCounter
from kantoor.smtpd.handler import MailHandler
from kantoor.smtpd.outbound_settings import DeliverySettings, delivery_settings
from kantoor.smtpd.protocol import KantoorSMTP
from kantoor.smtpd.queue_worker import DeliveryWorker
from kantoor.smtpd.quota_warning import QuotaWarner
from kantoor.storage import Store
from kantoor.worker_threads import WorkerThreads


class ListenerWithWorker:
    """An ``asyncio.Server`` whose closing also stops the delivery worker and the SMTP threads (same interface
    as the server)."""

    def __init__(self, server: asyncio.base_events.Server, worker: DeliveryWorker, warner: QuotaWarner,
                 threads: WorkerThreads) -> None:
        self.server = server
        self.worker = worker
        self.warner = warner
        self.threads = threads
        self._stopped: asyncio.Task[None] | None = None

    @property
    def sockets(self) -> Any:
        return self.server.sockets

    def is_serving(self) -> bool:
        return self.server.is_serving()

    def close(self) -> None:
        self.server.close()
        if self._stopped is None:
            self._stopped = asyncio.get_running_loop().create_task(self._stop_tasks())

    async def _stop_tasks(self) -> None:
        await self.warner.stop()
        await self.worker.stop()
        await self.threads.stop()  # after the sessions' last deliveries are committed

    async def wait_closed(self) -> None:
        if self._stopped is not None:
            await self._stopped
        await self.server.wait_closed()


async def start(
    settings: Settings,
    store: Store,
    authenticator: Authenticator,
    quota: QuotaEngine,
    ssl_context: ssl.SSLContext,
    sockets: Mapping[str, socket.socket],
    delivery: DeliverySettings | None = None,
    balancing: Balancing | None = None,
) -> list[tuple[str, Any]]:
    """Serve the MX, submission and submissions sockets (bound by the server) and start delivering the outbound queue.

    Returns (name, server) pairs; closing the ``smtp`` one also stops the delivery worker.
    ``delivery`` defaults to ``settings.delivery`` (or ``KANTOOR_DELIVERY_*`` variables). With ``balancing``
    (several server processes on shared listening sockets) this process serves the connections it accepts.
    """
    loop = asyncio.get_running_loop()
    delivery = delivery or delivery_settings(settings)
    use_name_servers(delivery)
    org_domain.warm_up()
    worker = DeliveryWorker(settings, store, delivery)
    threads = WorkerThreads(settings.server.worker_threads, "kantoor-smtp")
    handler = MailHandler(settings, store, quota, delivery, queued=worker.wake, threads=threads)

    connections = ConnectionCounter(settings.limits.smtp_connections_per_ip)  # the three listeners' together

    def factory(starttls: bool, auth_required: bool) -> Callable[[], KantoorSMTP]:
        # One protocol object per connection, as asyncio wants.
        def make() -> KantoorSMTP:
            return KantoorSMTP(handler, settings=settings, authenticator=authenticator, quota=quota,
                               starttls_context=ssl_context if starttls else None, auth_required=auth_required,
                               connections=connections)
        return make

    listeners = (
        ("smtp", factory(starttls=True, auth_required=False), None),
        ("submission", factory(starttls=True, auth_required=True), None),
        ("submissions", factory(starttls=False, auth_required=True), ssl_context),
    )
    servers: list[tuple[str, Any]] = []
    try:
        for name, make, implicit_tls in listeners:
            if balancing is not None:
                server = balancing.serve_asyncio(sockets[name], make, implicit_tls)
            else:
                server = await loop.create_server(make, sock=sockets[name], ssl=implicit_tls)
            servers.append((name, server))
    except BaseException:
        for _, server in servers:
            server.close()
        await threads.stop()
        raise
    worker.start()
    warner = QuotaWarner(settings, store, queued=worker.wake)
    warner.start()
    servers[0] = ("smtp", ListenerWithWorker(servers[0][1], worker, warner, threads))
    return servers
