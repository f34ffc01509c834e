"""The HTTP application: one ASGI dispatcher in front of the DAV apps.

``/dav/``   → Radicale (CalDAV/CardDAV) on our storage/auth/rights plugins
``/files/`` → wsgidav (the drive) on our DAVProvider
``/.well-known/caldav`` and ``/.well-known/carddav`` → redirect to ``/dav/`` (RFC 6764)

The WSGI apps run in worker threads (:mod:`kantoor.davserver.wsgi_host`), so their
Store calls never block the event loop; request bodies over a few KiB are pulled
from the loop chunk by chunk, so an upload is never buffered whole here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.davserver.wsgi_host import WSGIHost
from kantoor.quota import QuotaEngine
from kantoor.storage import Store

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WELL_KNOWN = {"/.well-known/caldav": "/dav/", "/.well-known/carddav": "/dav/"}


async def _simple_response(send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class Dispatcher:
    """Routes by path prefix; each mounted app sees its prefix as SCRIPT_NAME."""

    def __init__(self, mounts: dict[str, ASGIApp]) -> None:
        # Longest prefix first so "/dav" never shadows a longer mount.
        self.mounts = sorted(mounts.items(), key=lambda kv: -len(kv[0]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        target = WELL_KNOWN.get(path.rstrip("/"))
        if target is not None:
            await _simple_response(send, 301, b"moved\n", ((b"location", target.encode()),))
            return
        for prefix, app in self.mounts:
            if path == prefix or path.startswith(prefix + "/"):
                await app({**scope, "root_path": scope.get("root_path", "") + prefix}, receive, send)
                return
        if path == "/":
            await _simple_response(send, 200, b"Kantoor: CalDAV/CardDAV at /dav/, WebDAV drive at /files/\n")
            return
        await _simple_response(send, 404, b"not found\n")


def build_app(settings: Settings, store: Store, authenticator: Authenticator, quota: QuotaEngine) -> ASGIApp:
    from kantoor.davserver.caldav import build_caldav_app
    from kantoor.davserver.files import build_files_asgi

    workers = settings.server.worker_threads
    return Dispatcher({
        "/dav": WSGIHost(build_caldav_app(settings, store, authenticator, quota), workers=workers),
        "/files": build_files_asgi(settings, store, authenticator, quota, workers=workers),
    })
