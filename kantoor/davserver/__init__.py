"""HTTP frontends: CalDAV/CardDAV (Radicale) at /dav/, the WebDAV drive (wsgidav) at /files/."""

from kantoor.davserver.app import build_app

__all__ = ["build_app"]
