"""The drive's WSGI application: wsgidav on our own DAVProvider, mounted at ``/files``.

The dispatcher calls it with ``SCRIPT_NAME="/files"`` and the rest of the path in
``PATH_INFO``; wsgidav's ``mount_path`` makes every href it writes (PROPFIND,
lock roots, error bodies) start with that prefix.
"""

from __future__ import annotations

import logging
from wsgiref.types import WSGIApplication

from wsgidav import util as wsgidav_util
from wsgidav.error_printer import ErrorPrinter
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.davserver.files.authentication import DriveAuthenticator, DriveDomainController
from kantoor.davserver.files.browser import DriveDirBrowser, redirect_bare_mount
from kantoor.davserver.files.context import DriveContext
from kantoor.davserver.files.locking import DatabaseLockManager
from kantoor.davserver.files.provider import DriveProvider
from kantoor.quota import QuotaEngine
from kantoor.storage import Store

MOUNT_PATH = "/files"


def build_files_app(settings: Settings, store: Store, authenticator: Authenticator, quota: QuotaEngine,
                    mount_path: str = MOUNT_PATH) -> WSGIApplication:
    """The WebDAV drive as a WSGI app; blocking (Store calls), so run it in worker threads."""
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
        "block_size": 64 * 1024,
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
    # Locks in the database, so that every server process honours them (ARCHITECTURE invariant 2).
    app.lock_manager = DatabaseLockManager(store)
    provider.set_lock_manager(app.lock_manager)
    return redirect_bare_mount(app)
