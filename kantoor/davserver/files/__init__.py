"""The WebDAV drive (``/files/``): wsgidav with our own DAVProvider on the Store.

Modules: ``application`` (wsgidav configuration), ``authentication`` (Basic auth
domain controller, webdav feature gate), ``provider`` (URL namespace → Store),
``resources`` (listing, folders, files), ``upload`` (streaming PUT), ``errors``
(Store errors → HTTP statuses), ``browser`` (HTML listings).

Known limits of this first cut: WebDAV locks are kept in the process's memory
(wsgidav's ``LockStorageDict``), so they vanish on restart and are not shared
between two ``kantoor serve`` processes (ARCHITECTURE invariant 2 wants a
database ``Lock`` table); dead properties are not stored (PROPPATCH answers 403
per property, except Windows' Win32 attributes, which are accepted and dropped);
only the user's own drive is reachable (group drives, "Shared with me" later).
"""

from kantoor.davserver.files.application import build_files_app

__all__ = ["build_files_app"]
