"""Radicale's request methods where Kantoor answers differently.

- PROPFIND: ``Depth: infinity`` is refused (RFC 4918 §9.1, ``DAV:propfind-finite-depth``),
  and the multistatus is completed by :class:`~kantoor.davserver.caldav.properties.PropfindCompleter`.
- PROPPATCH: answered through the Store (dead properties, protected-property refusal).
- GET of a vCard and address-data in REPORTs come in the vCard version the client asks for
  (:mod:`kantoor.davserver.caldav.vcard_negotiation`).
- REPORT limits Radicale ignores (limit-recurrence-set, limit-freebusy-set, CARDDAV:limit):
  :mod:`kantoor.davserver.caldav.report_limits`.
- POST to the scheduling outbox: free/busy (:mod:`kantoor.davserver.caldav.scheduling`).
- COPY (which Radicale lacks): :mod:`kantoor.davserver.caldav.copying`.
- PUT: a body of the wrong media type is 415 with ``supported-calendar-data`` /
  ``supported-address-data``; one Radicale cannot parse is 400 with
  ``valid-calendar-data`` / ``valid-address-data`` (RFC 4791 §5.3.2.1, RFC 6352 §6.3.2.1).
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from http import client

import defusedxml.ElementTree as DefusedET
from radicale import httputils, pathutils, types, xmlutils
from radicale.app import Application
from radicale.app.base import Access

from kantoor.davserver.caldav.context import DavContext, put_body
from kantoor.davserver.caldav.copying import do_copy
from kantoor.davserver.caldav.properties import BadPropertyUpdate, PropfindCompleter, PropfindRequest, proppatch
from kantoor.davserver.caldav.report_limits import ReportLimits, apply_calendar_limits, apply_result_limit, parse_limits
from kantoor.davserver.caldav.resources import StoredCollection, StoredItem
from kantoor.davserver.caldav.scheduling import OUTBOX, schedule_freebusy
from kantoor.davserver.caldav.vcard_negotiation import convert_address_data, requested_version, wanted_address_data
from kantoor.davserver.caldav.vcard_versions import convert

MEDIA_TYPES_OF_KIND = {
    "calendar": ("text/calendar",),
    "addressbook": ("text/vcard", "text/x-vcard", "text/directory"),
}
SUPPORTED_DATA = {"calendar": "C:supported-calendar-data", "addressbook": "CR:supported-address-data"}
VALID_DATA = {"calendar": "C:valid-calendar-data", "addressbook": "CR:valid-address-data"}


def _buffer_body(environ: types.WSGIEnviron) -> bytes:
    """Read the (gate-bounded) body once and give Radicale a fresh stream of it."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class DavMethods(Application):
    def __init__(self, context: DavContext, configuration) -> None:  # type: ignore[no-untyped-def]
        super().__init__(configuration)
        self.context = context

    def do_PROPFIND(self, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
                    user_groups: set, request_info: dict) -> types.WSGIResponse:
        if environ.get("HTTP_DEPTH", "").strip().lower() == "infinity":
            return self._webdav_error_response(client.FORBIDDEN, "D:propfind-finite-depth", request_info)
        body = _buffer_body(environ)
        status, headers, content, extra = super().do_PROPFIND(environ, base_prefix, path, user, user_groups,
                                                             request_info)
        if status != client.MULTI_STATUS or not content:
            return status, headers, content, extra
        # Radicale parsed this body already (defusedxml), so it is well-formed here.
        request = PropfindRequest.parse(DefusedET.fromstring(body) if body.strip() else None)
        multistatus = ET.fromstring(content)  # our own answer
        PropfindCompleter(self.context, base_prefix, request).complete(multistatus)
        return status, headers, self._xml_response(multistatus, request_info), extra

    def do_PROPPATCH(self, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
                     user_groups: set, request_info: dict) -> types.WSGIResponse:
        access = Access(self._rights, user, user_groups, path)
        if not access.check("w"):
            return httputils.NOT_ALLOWED
        try:
            request = self._read_xml_request_body(environ, request_info)
        except RuntimeError:
            return httputils.BAD_REQUEST
        target = next(iter(self._storage.discover(path)), None)
        if target is None:
            return httputils.NOT_FOUND
        if not access.check("w", target):
            return httputils.NOT_ALLOWED
        if not isinstance(target, (StoredCollection, StoredItem)):
            return httputils.FORBIDDEN  # principals and the root are managed by the account
        try:
            answer = proppatch(self.context, base_prefix, path, target, request)
        except BadPropertyUpdate:
            return httputils.BAD_REQUEST
        headers = {"DAV": httputils.DAV_HEADERS, "Content-Type": f"text/xml; charset={self._encoding}"}
        return client.MULTI_STATUS, headers, self._xml_response(answer, request_info), None

    def do_PUT(self, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
               user_groups: set, request_info: dict) -> types.WSGIResponse:
        parts = [p for p in pathutils.strip_path(path).split("/") if p]
        kind = None
        if user and len(parts) == 3:
            parent = next(iter(self._storage.discover(f"/{parts[0]}/{parts[1]}/")), None)
            kind = parent.kind if isinstance(parent, StoredCollection) else None
        if kind is not None:
            media_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
            if media_type and media_type not in MEDIA_TYPES_OF_KIND[kind]:
                return self._webdav_error_response(client.UNSUPPORTED_MEDIA_TYPE, SUPPORTED_DATA[kind], request_info)
        with put_body(_buffer_body(environ)):
            response = super().do_PUT(environ, base_prefix, path, user, user_groups, request_info)
        if kind is not None and response[0] == client.BAD_REQUEST:
            return self._webdav_error_response(client.BAD_REQUEST, VALID_DATA[kind], request_info)
        return response

    def do_COPY(self, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
                user_groups: set, request_info: dict) -> types.WSGIResponse:
        return do_copy(self, environ, base_prefix, path, user, user_groups, request_info)

    def do_GET(self, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
               user_groups: set, request_info: dict) -> types.WSGIResponse:
        status, headers, answer, extra = super().do_GET(environ, base_prefix, path, user, user_groups, request_info)
        if status != client.OK or not str(dict(headers).get("Content-Type", "")).startswith("text/vcard"):
            return status, headers, answer, extra
        headers = {**dict(headers), "Vary": "Accept"}
        version = requested_version(environ.get("HTTP_ACCEPT", ""))
        if version is not None and isinstance(answer, str):
            # Same entity, another representation: the ETag stays the stored one, so a client's
            # If-Match on its next PUT still names what is stored (RFC 6352 §6.3.2 GET).
            answer = convert(answer, version)
        return status, headers, answer, extra

    def do_REPORT(self, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
                  user_groups: set, request_info: dict) -> types.WSGIResponse:
        body = _buffer_body(environ)
        version = wanted_address_data(body)  # raises DavPrecondition for a media type we cannot serve
        limits = ReportLimits()
        if b"limit" in body:  # most REPORTs have none: no second parse for them
            try:
                request = DefusedET.fromstring(body)
                limits = parse_limits(request)
            except ET.ParseError:
                pass  # Radicale answers the malformed body itself
            except ValueError:
                return httputils.BAD_REQUEST
            else:
                if limits.nresults is not None and request.tag != xmlutils.make_clark("CR:addressbook-query"):
                    limits = ReportLimits(limits.recurrence, limits.freebusy)
        response = super().do_REPORT(environ, base_prefix, path, user, user_groups, request_info)
        status, headers, content, extra = response
        if (version is None and not limits.rewrites_calendar_data and limits.nresults is None) \
                or status != client.MULTI_STATUS or not content:
            return response
        multistatus = ET.fromstring(content)  # our own answer
        if limits.nresults is not None:
            apply_result_limit(multistatus, limits.nresults, xmlutils.make_href(base_prefix, path))
        if limits.rewrites_calendar_data:
            apply_calendar_limits(multistatus, limits)
        if version is not None:
            convert_address_data(multistatus, version)
        return status, headers, self._xml_response(multistatus, request_info), extra

    def do_POST(self, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
                user_groups: set, request_info: dict) -> types.WSGIResponse:
        parts = [p for p in pathutils.strip_path(path).split("/") if p]
        if len(parts) != 2 or parts[1] != OUTBOX:
            return super().do_POST(environ, base_prefix, path, user, user_groups, request_info)
        if not user:
            return httputils.NOT_ALLOWED  # 401 with a challenge
        if parts[0] != user:
            return httputils.NOT_ALLOWED  # RFC 6638 §6.1: only the owner posts to an outbox
        media_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if media_type != "text/calendar":
            return self._webdav_error_response(client.UNSUPPORTED_MEDIA_TYPE, "C:supported-calendar-data",
                                               request_info)
        return schedule_freebusy(self.context, _buffer_body(environ))
