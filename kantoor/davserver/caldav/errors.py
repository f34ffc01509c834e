"""Store errors → CalDAV/CardDAV replies, around every Radicale request method.

Radicale turns any exception it does not expect into a 500, and it does not
know Kantoor's storage errors, so each ``do_<METHOD>`` is wrapped to answer
with the protocol's status (and the DAV precondition element where RFC 4791 /
6352 name one).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from http import client

from defusedxml import DefusedXmlException
from radicale import httputils, types
from radicale.app import REQUEST_METHODS, Application

from kantoor.davserver.caldav.methods import DavMethods
from kantoor.davserver.caldav.preconditions import DavPrecondition
from kantoor.storage import (
    AlreadyExists,
    BlobTooLarge,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
)

log = logging.getLogger(__name__)

Handler = Callable[..., types.WSGIResponse]


def _text(status: int, message: str) -> types.WSGIResponse:
    return status, {"Content-Type": "text/plain"}, message.rstrip("\n") + "\n", None


def guarded(method: Handler) -> Handler:
    @functools.wraps(method)
    def handle(self: Application, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
               user_groups: set, request_info: dict) -> types.WSGIResponse:
        request = environ.get("REQUEST_METHOD", "")
        try:
            return method(self, environ, base_prefix, path, user, user_groups, request_info)
        except DavPrecondition as exc:
            return self._webdav_error_response(exc.status, exc.precondition, request_info)
        except QuotaExceeded as exc:
            log.info("%s %s refused: %s", request, path, exc)
            # RFC 4331 §6: the precondition element says why nothing was stored.
            return self._webdav_error_response(client.INSUFFICIENT_STORAGE, "D:quota-not-exceeded", request_info)
        except DefusedXmlException:
            # Entity declarations, external references: refused, never expanded.
            return _text(client.BAD_REQUEST, "XML entity declarations are not accepted.")
        except BlobTooLarge:
            return httputils.REQUEST_ENTITY_TOO_LARGE
        except PreconditionFailed:
            return httputils.PRECONDITION_FAILED
        except PermissionDenied as exc:
            log.info("%s %s refused: %s", request, path, exc)
            return httputils.NOT_ALLOWED  # becomes 401 for anonymous requests
        except NotFound:
            return httputils.NOT_FOUND
        except AlreadyExists as exc:
            if request == "MKCALENDAR":
                return self._webdav_error_response(client.CONFLICT, "D:resource-must-be-null", request_info)
            if request == "MKCOL":
                return httputils.METHOD_NOT_ALLOWED  # RFC 4918 9.3.1: the resource exists
            return _text(client.CONFLICT, str(exc))

    return handle


class KantoorRadicale(DavMethods):
    """Radicale's application with Kantoor's methods, and Kantoor's storage errors mapped per method."""


for _method in [*REQUEST_METHODS, "COPY"]:
    _name = f"do_{_method}"
    setattr(KantoorRadicale, _name, guarded(getattr(DavMethods, _name)))
