"""The three SMTP listeners on the server's running asyncio loop.

``smtp``: MX (inbound from other servers), STARTTLS offered, AUTH optional.
``submission``: STARTTLS offered, AUTH required before MAIL.
``submissions``: the same with implicit TLS (RFC 8314).
aiosmtpd's Controller would start its own thread and loop; we want the one loop
every protocol shares, so the ``SMTP`` protocol class goes straight to
``loop.create_server``.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import ssl
from collections.abc import Callable

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.quota import QuotaEngine
from kantoor.smtpd.handler import MailHandler
from kantoor.smtpd.protocol import KantoorSMTP
from kantoor.storage import Store


async def start(
    settings: Settings,
    store: Store,
    authenticator: Authenticator,
    quota: QuotaEngine,
    ssl_context: ssl.SSLContext,
) -> list[tuple[str, asyncio.base_events.Server]]:
    """Listen on the MX, submission and submissions ports; returns (name, server) pairs."""
    loop = asyncio.get_running_loop()
    handler = MailHandler(settings, store, quota)

    def factory(starttls: bool, auth_required: bool) -> Callable[[], KantoorSMTP]:
        # One protocol object per connection, as asyncio wants.
        def make() -> KantoorSMTP:
            return KantoorSMTP(handler, settings=settings, authenticator=authenticator, quota=quota,
                               starttls_context=ssl_context if starttls else None, auth_required=auth_required)
        return make

    listeners = (
        ("smtp", settings.ports.smtp, factory(starttls=True, auth_required=False), None),
        ("submission", settings.ports.submission, factory(starttls=True, auth_required=True), None),
        ("submissions", settings.ports.submissions, factory(starttls=False, auth_required=True), ssl_context),
    )
    servers: list[tuple[str, asyncio.base_events.Server]] = []
    try:
        for name, port, make, implicit_tls in listeners:
            server = await loop.create_server(make, host=settings.server.host, port=port, ssl=implicit_tls,
                                              reuse_address=True)
            servers.append((name, server))
    except BaseException:
        for _, server in servers:
            server.close()
        raise
    return servers
