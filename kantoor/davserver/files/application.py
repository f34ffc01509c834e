"""The drive's WSGI application: wsgidav on our own DAVProvider, mounted at ``/files``.

The dispatcher calls it with ``SCRIPT_NAME="/files"`` and the rest of the path in
``PATH_INFO``; wsgidav's ``mount_path`` makes every href it writes (PROPFIND,
lock roots, error bodies) start with that prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.types import WSGIApplication

from wsgidav import util as wsgidav_util
from wsgidav.error_printer import ErrorPrinter
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.davserver.files.authentication import DriveAuthenticator, DriveDomainController, RecentLogins
from kantoor.davserver.files.browser import DriveDirBrowser, redirect_bare_mount
from kantoor.davserver.files.context import DriveContext
from kantoor.davserver.files.direct_put import DirectPuts
from kantoor.davserver.files.direct_read import DirectReads
from kantoor.davserver.files.direct_upload import DirectUploads
from kantoor.davserver.files.locking import DatabaseLockManager
from kantoor.davserver.files.provider import DriveProvider
from kantoor.quota import QuotaEngine
from kantoor.storage import Store

MOUNT_PATH = "/files"


def build_files_asgi(settings: Settings, store: Store, authenticator: Authenticator, quota: QuotaEngine,
                     workers: int = 16) -> DirectPuts:
    """The WebDAV drive as the ASGI app the server mounts at ``/files``: plain reads and small plain PUTs of
    one's own files answered directly (:mod:`~kantoor.davserver.files.direct_read`,
    :mod:`~kantoor.davserver.files.direct_put`), large plain PUTs of them stored from the socket by the
    WSGI host (:mod:`~kantoor.davserver.files.direct_upload`), everything else by wsgidav in ``workers``
    threads."""
    ctx = DriveContext(settings=settings, store=store, authenticator=authenticator, quota=quota,
                       recent_logins=RecentLogins())
    host = DirectUploads(build_files_app(settings, store, authenticator, quota, ctx=ctx), ctx, workers=workers)
    return DirectPuts(DirectReads(host, ctx), ctx)


def build_files_app(settings: Settings, store: Store, authenticator: Authenticator, quota: QuotaEngine,
                    mount_path: str = MOUNT_PATH, ctx: DriveContext | None = None) -> WSGIApplication:
    """The WebDAV drive as a WSGI app; blocking (Store calls), so run it in worker threads."""
    if ctx is None:
        ctx = DriveContext(settings=settings, store=store, authenticator=authenticator, quota=quota)
    provider = DriveProvider(ctx)
    # wsgidav logs every request and warns about routine things (unread bodies,
    # Basic auth without TLS — TLS is the https listener's job); keep real errors only.
    logging.getLogger("wsgidav").setLevel(logging.ERROR)
    # What wsgidav's own server does for "suppress_version_info" (error pages, listings).
    wsgidav_util.public_wsgidav_info = "WsgiDAV"
    wsgidav_util.public_python_info = "Python"
    config = {
        "provider_mapping": {"/": provider},
        "mount_path": mount_path.rstrip("/") or None,
        # Not a wsgidav option: how DriveDomainController reaches the core (kept by reference).
        "kantoor": ctx,
        "http_authenticator": {
            "domain_controller": DriveDomainController,
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
            "trusted_auth_header": None,
        },
        # No CORS middleware: the drive is for DAV clients, not for other sites' scripts.
        "middleware_stack": [ErrorPrinter, DriveAuthenticator, DriveDirBrowser, RequestResolver],
        # Locks: DatabaseLockManager, set below (wsgidav would build an in-memory one).
        "lock_storage": False,
        # Dead properties are kept by the resources themselves through the Store
        # (keyed by collection/item, so they follow a MOVE), not by a URL-keyed manager.
        "property_manager": None,
        # GET bodies leave in 1 MiB pieces: every piece crosses from a worker thread to the
        # event loop, and at 64 KiB that hand-off capped a large GET near 300-500 MB/s
        # (bench/webdav.py: about 1.1-1.7 GB/s now). At most one piece per request is held.
        "block_size": 1024 * 1024,
        "verbose": 1,
        "logging": {"enable": False},
        "suppress_version_info": True,
        "dir_browser": {
            "enable": True,
            "response_trailer": "Kantoor",
            "davmount": True,
            "ms_sharepoint_support": False,
            "libre_office_support": False,
        },
    }
    app = WsgiDAVApp(config)
    ctx.dav_config = app.config
    # Locks in the database, so that every server process honours them (ARCHITECTURE invariant 2).
    app.lock_manager = DatabaseLockManager(store)
    provider.set_lock_manager(app.lock_manager)
    return redirect_bare_mount(_one_read_session_per_request(app, store, provider.end_request))


def _one_read_session_per_request(app: WSGIApplication, store: Store,
                                  request_done: Callable[[], None]) -> WSGIApplication:
    """Run each request's Store reads (credentials, path, locks) in one session (see Store.request_scope).
    (A body cut off by the client raises in the server's WSGI host, :mod:`kantoor.davserver.wsgi_host`,
    so an interrupted upload is never stored truncated.)

    wsgidav does its work while the response is iterated; the shared read transaction
    ends when the status is sent, so a GET's body streams from the blob store without
    a read transaction held open.
    """
    def drive_request(environ: dict, start_response: Callable[..., Any]) -> Iterator[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            store.end_shared_read()
            return start_response(status, headers, exc_info)

        try:
            with store.request_scope():
                yield from app(environ, start)
        finally:
            # What the request learnt about locks is kept per worker thread: forget it.
            request_done()

    return drive_request
