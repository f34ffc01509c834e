"""The WebDAV drive (``/files/``): wsgidav with our own DAVProvider on the Store.

Modules: ``application`` (wsgidav configuration), ``authentication`` (Basic auth
domain controller, webdav feature gate), ``provider`` (URL namespace → Store: own
drive, ``Groups/``, ``Shared with me/``, others' Drop folders), ``resources``
(listing, folders, files, dead properties), ``upload`` (streaming PUT, Drop folder
puts), ``locking`` (WebDAV locks
in the database), ``errors`` (Store errors → HTTP statuses), ``browser`` (HTML listings).

Locks and dead properties live in the database (``Lock`` and ``DeadProperty``
tables), so two ``kantoor serve`` processes on one database honour the same locks
and see the same properties. Known limit: the guard against a LOCK racing a PUT
that is still receiving its body is per process.

Per request (see ``application``): every Store read of the request shares one
database session. A client that drops the connection mid-upload never gets a
truncated file stored: the server's WSGI host (``kantoor.davserver.wsgi_host``)
raises instead of ending the body.
"""

from kantoor.davserver.files.application import build_files_app, build_files_asgi

__all__ = ["build_files_app", "build_files_asgi"]
