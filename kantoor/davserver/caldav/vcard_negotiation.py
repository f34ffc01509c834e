"""Which vCard version a client asks for (RFC 6352 §6.3.2 GET, §10.4 CARDDAV:address-data).

- GET: ``Accept: text/vcard; version=4.0`` (or 3.0); the highest-q text/vcard range
  naming a version we serve wins. Without a version the card is served as stored.
- REPORT: ``<CR:address-data content-type="text/vcard" version="4.0"/>``. RFC 6352
  makes 3.0 the default when ``version`` is absent, but Kantoor then serves each
  card as it was stored, as other servers do, so clients that store vCard 4.0
  (and never ask for it by name) get back exactly what they wrote. A media type
  or version we cannot produce is 403 ``CARDDAV:supported-address-data``.

A converted card keeps the stored ETag. A per-representation ETag would be the HTTP
ideal, but PROPFIND and sync-collection report ``getetag`` without any way to name a
version, so a client that downloads 4.0 and later compares that ETag with the listed
one (DAVx5 without sync-collection, Evolution) would fetch every converted card on
every sync; and If-Match on its next PUT must name what is stored anyway.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import defusedxml.ElementTree as DefusedET
from radicale import xmlutils

from kantoor.davserver.caldav.preconditions import DavPrecondition
from kantoor.davserver.caldav.vcard_versions import VERSIONS, convert

ADDRESS_DATA = xmlutils.make_clark("CR:address-data")
VCARD_TYPES = ("text/vcard", "text/x-vcard", "text/directory")


def requested_version(accept: str) -> str | None:
    """The vCard version an Accept header asks for, or None (serve as stored)."""
    best: tuple[float, str] | None = None
    for media_range in accept.split(","):
        media_type, *params = [p.strip() for p in media_range.split(";")]
        if media_type.lower() not in VCARD_TYPES:
            continue
        values = {k.strip().lower(): v.strip().strip('"') for k, _, v in (p.partition("=") for p in params)}
        try:
            quality = float(values.get("q", "1"))
        except ValueError:
            quality = 0.0
        version = values.get("version")
        if version in VERSIONS and quality > 0 and (best is None or quality > best[0]):
            best = (quality, version)
    return best[1] if best else None


def wanted_address_data(body: bytes) -> str | None:
    """The version a REPORT body's CR:address-data asks for (None: as stored)."""
    if b"address-data" not in body:
        return None
    try:
        request = DefusedET.fromstring(body)
    except Exception:
        return None  # Radicale answers the malformed body itself
    for element in request.iter(ADDRESS_DATA):
        content_type = element.get("content-type", "text/vcard").lower()
        version = element.get("version")
        if content_type not in VCARD_TYPES or (version is not None and version not in VERSIONS):
            raise DavPrecondition(403, "CR:supported-address-data",
                                  f"address data is served as text/vcard 3.0 or 4.0, not {content_type} {version}")
        return version
    return None


def convert_address_data(multistatus: ET.Element, version: str) -> None:
    """Rewrite every CR:address-data of a REPORT answer as vCard ``version``, in place."""
    for element in multistatus.iter(ADDRESS_DATA):
        if element.text:
            element.text = convert(element.text, version)
