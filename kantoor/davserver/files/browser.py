"""HTML listings of drive folders for web browsers (wsgidav's directory browser).

wsgidav's browser redirects ``…/folder`` to ``…/folder/`` with a Location that
drops the mount point (``/files``); this subclass sends the full path instead, and
:func:`redirect_bare_mount` sends ``/files`` itself to ``/files/`` (wsgidav turns
an empty PATH_INFO into "/" before any middleware could tell them apart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote
from wsgiref.types import WSGIApplication

from wsgidav.dir_browser import WsgiDavDirBrowser

PATH_SAFE = "/@:~!$&'()*+,;=-._"


def _redirect(start_response: Callable[..., Any], location: str) -> list[bytes]:
    start_response("301 Moved Permanently", [
        ("Location", quote(location, safe=PATH_SAFE)), ("Content-Length", "0"), ("Content-Type", "text/plain"),
    ])
    return [b""]


def redirect_bare_mount(app: WSGIApplication) -> WSGIApplication:
    def bare_mount_redirect(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") == "" and environ["REQUEST_METHOD"] in ("GET", "HEAD"):
            return _redirect(start_response, environ.get("SCRIPT_NAME", "") + "/")
        return app(environ, start_response)

    return bare_mount_redirect


class DriveDirBrowser(WsgiDavDirBrowser):
    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            # Only GET/HEAD of a folder is the browser's; wsgidav's would resolve every request's path once more.
            return self.next_app(environ, start_response)
        path = environ["PATH_INFO"]
        provider = environ.get("wsgidav.provider")
        if environ["REQUEST_METHOD"] == "GET" and not path.endswith("/") and provider is not None:
            resource = provider.get_resource_inst(path, environ)
            if resource is not None and resource.is_collection:
                return _redirect(start_response, environ.get("SCRIPT_NAME", "") + path + "/")
        return super().__call__(environ, start_response)
