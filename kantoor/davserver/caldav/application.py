"""Building the CalDAV/CardDAV WSGI application: Radicale on Kantoor's plugins."""

from __future__ import annotations

import logging

from radicale import config as radicale_config
from radicale import types

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.davserver.caldav.auth_plugin import Auth
from kantoor.davserver.caldav.context import DavContext
from kantoor.davserver.caldav.errors import KantoorRadicale
from kantoor.davserver.caldav.gate import REALM, CalDavGate
from kantoor.davserver.caldav.rights_plugin import Rights
from kantoor.davserver.caldav.storage_plugin import Storage
from kantoor.quota import QuotaEngine
from kantoor.storage import Store


def radicale_configuration(context: DavContext) -> radicale_config.Configuration:
    """Radicale's settings: our plugins (as factories bound to ``context``), no web UI, no files."""
    limit = context.settings.limits.max_dav_body_bytes
    configuration = radicale_config.load()
    configuration.update({
        "server": {
            # The gate enforces the body limit; Radicale caps one resource at 80 %
            # of max_content_length, so give it room above the limit.
            "max_content_length": str(2 * limit),
            "max_resource_size": str(limit),
            "delay_on_error": "0",
        },
        "auth": {"type": lambda conf: Auth(conf, context), "realm": REALM, "delay": "0"},
        "rights": {
            "type": lambda conf: Rights(conf, context),
            # PUT of a whole .ics/.vcf onto a collection would replace it outside
            # one transaction; import belongs to the import tools.
            "permit_overwrite_collection": "False",
        },
        "storage": {"type": lambda conf: Storage(conf, context)},
        "web": {"type": "none"},
        "sharing": {"type": "none"},
        "hook": {"type": "none"},
    }, "kantoor", privileged=True)
    return configuration


def build_caldav_app(settings: Settings, store: Store, authenticator: Authenticator,
                     quota: QuotaEngine) -> types.WSGIApplication:
    """The WSGI app for ``/dav/`` (mounted with SCRIPT_NAME ``/dav``)."""
    # Radicale logs every request at INFO and bad client input with tracebacks at
    # WARNING; Kantoor keeps only its errors.
    logging.getLogger("radicale").setLevel(logging.ERROR)
    context = DavContext(settings=settings, store=store, authenticator=authenticator, quota=quota)
    return CalDavGate(context, KantoorRadicale(context, radicale_configuration(context)))
