"""COPY of calendar objects and vCards (RFC 4918 §9.8 with RFC 4791 §5.3.2.1 / RFC 6352 §6.3.2.1).

Radicale has no COPY. Kantoor copies one item into another (or the same)
calendar or address book as one Store transaction (rights on both sides, UID
uniqueness at the destination, the destination owner's capacity):

- ``Destination`` is required (400) and must be on this server (502) under ``/dav/``;
- ``Overwrite: F`` with an existing destination is 412; otherwise the answer is 201
  (created) or 204 (replaced);
- the destination must be a collection of the same type, else 403 with
  ``calendar-collection-location-ok`` / ``addressbook-collection-location-ok``;
  a missing destination collection is 409;
- a UID already used at the destination by another object is 409 ``no-uid-conflict``
  (so a copy inside the same calendar always is);
- collections are not copied (403).
"""

from __future__ import annotations

from http import client
from urllib.parse import unquote, urlparse

from radicale import httputils, pathutils, storage, types, utils
from radicale.app.base import Access, ApplicationBase

from kantoor.davserver.caldav.resources import StoredCollection, StoredItem

LOCATION_OK = {"VCALENDAR": "C:calendar-collection-location-ok",
               "VADDRESSBOOK": "CR:addressbook-collection-location-ok"}


def do_copy(app: ApplicationBase, environ: types.WSGIEnviron, base_prefix: str, path: str, user: str,
            user_groups: set, request_info: dict) -> types.WSGIResponse:
    raw_destination = environ.get("HTTP_DESTINATION", "").strip()
    if not raw_destination:
        return client.BAD_REQUEST, {"Content-Type": "text/plain"}, "COPY needs a Destination header.\n", None
    to_url = urlparse(raw_destination)
    if to_url.netloc:
        netloc = to_url.netloc if to_url.port is not None else (
            to_url.netloc + (":443" if to_url.scheme == "https" else ":80"))
        if netloc != utils.get_server_netloc(environ, force_port=True):
            return httputils.REMOTE_DESTINATION
    to_path = pathutils.sanitize_path(unquote(to_url.path))
    if not (to_path + "/").startswith(base_prefix + "/"):
        return httputils.NOT_ALLOWED
    to_path = to_path[len(base_prefix):]
    if pathutils.strip_path(to_path) == pathutils.strip_path(path):
        return client.FORBIDDEN, {"Content-Type": "text/plain"}, "Source and destination are the same.\n", None
    overwrite = environ.get("HTTP_OVERWRITE", "T").strip().upper() != "F"

    access = Access(app._rights, user, user_groups, path)
    to_access = Access(app._rights, user, user_groups, to_path)
    if not access.check("r") or not to_access.check("w"):
        return httputils.NOT_ALLOWED
    item = next(iter(app._storage.discover(path)), None)
    if item is None:
        return httputils.NOT_FOUND
    if isinstance(item, storage.BaseCollection):
        return client.FORBIDDEN, {"Content-Type": "text/plain"}, "Collections cannot be copied.\n", None
    if not access.check("r", item):
        return httputils.NOT_ALLOWED
    assert isinstance(item, StoredItem) and item.collection is not None
    tag = item.collection.tag
    to_item = next(iter(app._storage.discover(to_path)), None)
    if isinstance(to_item, storage.BaseCollection):
        return app._webdav_error_response(client.FORBIDDEN, LOCATION_OK[tag], request_info)
    to_collection = next(iter(app._storage.discover(pathutils.parent_path(to_path))), None)
    if to_collection is None:
        return httputils.CONFLICT
    if not isinstance(to_collection, StoredCollection) or to_collection.tag != tag:
        return app._webdav_error_response(client.FORBIDDEN, LOCATION_OK[tag], request_info)
    if to_item is not None and not overwrite:
        return httputils.PRECONDITION_FAILED
    to_href = pathutils.strip_path(to_path).rsplit("/", 1)[-1]
    try:
        created = app._storage.copy(item, to_collection, to_href, overwrite)  # type: ignore[attr-defined]
    except ValueError as exc:  # a destination name the Store does not accept
        return client.BAD_REQUEST, {"Content-Type": "text/plain"}, f"{exc}\n", None
    return (client.CREATED if created else client.NO_CONTENT), {}, None, None
