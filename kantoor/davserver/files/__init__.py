"""The WebDAV drive (``/files/``): wsgidav with our own DAVProvider on the Store.

Modules: ``application`` (wsgidav configuration), ``authentication`` (Basic auth
domain controller, webdav feature gate), ``provider`` (URL namespace → Store: own
drive, ``Groups/``, ``Shared with me/``, others' Drop folders), ``resources``
(listing, folders, files, dead properties), ``upload`` (streaming PUT, Drop folder
puts), ``locking`` (WebDAV locks in the database), ``errors`` (Store errors → HTTP
statuses), ``browser`` (HTML listings).

Locks and dead properties live in the database (``Lock`` and ``DeadProperty``
tables), so two ``kantoor serve`` processes on one database honour the same locks
and see the same properties. Known limits: wsgidav's guard against a LOCK racing a
PUT that is still receiving its body is per process; Basic auth is accepted on
plain HTTP from any address (the issue wants it refused except on loopback).
"""

from kantoor.davserver.files.application import build_files_app

__all__ = ["build_files_app"]
