"""CalDAV/CardDAV at ``/dav/``: Radicale with Kantoor's storage, auth and rights plugins.

See :mod:`kantoor.davserver.caldav.context` for how the plugins reach the Store.
"""

from kantoor.davserver.caldav.application import build_caldav_app

__all__ = ["build_caldav_app"]
