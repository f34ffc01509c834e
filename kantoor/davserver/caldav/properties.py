"""DAV properties: PROPPATCH kept through the Store, and PROPFIND answers that tell the truth.

Radicale keeps collection properties as plain text "meta" and fills several
live properties with fixed values (every writer holds ``DAV:all``, three
reports it does not implement are announced, ``calendar-user-address-set`` is
the request URL). Kantoor instead

- answers PROPPATCH itself (:func:`proppatch`): protected properties are refused
  with 403 ``DAV:cannot-modify-protected-property`` (the others of the request then
  fail with 424, RFC 4918 §9.2), display name / description / colour go to the
  collection's columns, every other property is kept whole as XML in the Store's
  dead-property table — all in one transaction;
- completes Radicale's PROPFIND multistatus (:class:`PropfindCompleter`): the
  privileges the ACL engine grants, the reports that exist, the account's
  ``mailto:`` addresses, RFC 4331 quota and the dead properties.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

import defusedxml.ElementTree as DefusedET
from radicale import pathutils, xmlutils

from kantoor.auth.rights import DAV_PRIVILEGES
from kantoor.davserver.caldav.bindings import bound_collection_id, dav_rights, shared_by_id
from kantoor.davserver.caldav.context import DavContext, current_request
from kantoor.davserver.caldav.resources import StoredCollection, StoredItem
from kantoor.davserver.caldav.scheduling import INBOX, OUTBOX, box_resourcetype, is_schedule_box
from kantoor.davserver.caldav.vcard_versions import VERSIONS
from kantoor.storage import NotFound, PermissionDenied
from kantoor.storage.models import Account, Collection

clark = xmlutils.make_clark

PROTECTED = frozenset(clark(tag) for tag in (
    "D:resourcetype", "D:getetag", "D:getlastmodified", "D:getcontentlength", "D:getcontenttype",
    "D:creationdate", "D:lockdiscovery", "D:supportedlock", "D:sync-token", "D:current-user-principal",
    "D:current-user-privilege-set", "D:supported-report-set", "D:owner", "D:principal-URL",
    "D:principal-collection-set", "D:acl", "D:acl-restrictions", "D:inherited-acl-set", "D:group-membership",
    "D:quota-available-bytes", "D:quota-used-bytes",
    "CS:getctag", "C:supported-calendar-component-set", "C:supported-calendar-data", "C:max-resource-size",
    "C:min-date-time", "C:max-date-time", "C:max-instances", "C:max-attendees-per-instance",
    "C:calendar-home-set", "C:calendar-user-address-set", "C:schedule-inbox-URL", "C:schedule-outbox-URL",
    "CR:addressbook-home-set", "CR:supported-address-data", "CR:max-resource-size",
    "RADICALE:version", "RADICALE:getcontentcount", "RADICALE:displayname",
))

# Properties kept in Collection columns, per collection kind.
COLUMN_OF_PROPERTY = {
    "calendar": {clark("D:displayname"): "display_name", clark("C:calendar-description"): "description",
                 clark("ICAL:calendar-color"): "color"},
    "addressbook": {clark("D:displayname"): "display_name", clark("CR:addressbook-description"): "description",
                    clark("ICAL:calendar-color"): "color"},
}

# Properties Radicale or this module answer (never dead ones).
LIVE = PROTECTED | {name for columns in COLUMN_OF_PROPERTY.values() for name in columns}

QUOTA_PROPERTIES = (clark("D:quota-available-bytes"), clark("D:quota-used-bytes"))
PRIVILEGE_SET = clark("D:current-user-privilege-set")
REPORT_SET = clark("D:supported-report-set")
ADDRESS_SET = clark("C:calendar-user-address-set")
ADDRESS_DATA_SET = clark("CR:supported-address-data")
RESOURCETYPE = clark("D:resourcetype")
USER_TYPE = clark("C:calendar-user-type")
PRINCIPAL_HREFS = (clark("D:principal-URL"), clark("C:calendar-home-set"), clark("CR:addressbook-home-set"))

REPORTS_OF_KIND = {
    "calendar": ("D:sync-collection", "C:calendar-multiget", "C:calendar-query", "C:free-busy-query"),
    "addressbook": ("D:sync-collection", "CR:addressbook-multiget", "CR:addressbook-query"),
}


class BadPropertyUpdate(ValueError):
    """The PROPPATCH body is not a DAV:propertyupdate."""


def property_xml(element: ET.Element) -> str:
    """The property element as the XML text the Store keeps (namespaces declared inside)."""
    return ET.tostring(element, encoding="unicode")


def property_element(name: str, xml: str) -> ET.Element:
    try:
        element = DefusedET.fromstring(xml)
    except Exception:  # stored by an older version as text: keep it readable
        element = ET.Element(name)
        element.text = xml
    return element


def text_property_xml(name: str, text: str) -> str:
    """A text-valued property (as Radicale's MKCALENDAR hands them over) as stored XML."""
    element = ET.Element(name)
    element.text = text
    return property_xml(element)


# ---------------------------------------------------------------- PROPPATCH
def proppatch(context: DavContext, base_prefix: str, path: str, target: StoredCollection | StoredItem,
              request: ET.Element | None) -> ET.Element:
    """Apply a DAV:propertyupdate to a calendar, address book or item; the RFC 4918 §9.2 multistatus."""
    if request is None or request.tag != clark("D:propertyupdate"):
        raise BadPropertyUpdate("PROPPATCH needs a DAV:propertyupdate body")
    operations: list[tuple[bool, ET.Element]] = []
    for instruction in request:
        if instruction.tag in (clark("D:set"), clark("D:remove")):
            for prop in instruction.findall(clark("D:prop")):
                operations.extend((instruction.tag == clark("D:set"), element) for element in prop)
    if isinstance(target, StoredItem):
        collection = target.collection
        assert isinstance(collection, StoredCollection)
        columns: dict[str, str] = {}
        item_name: str | None = target.href
    else:
        collection = target
        columns = COLUMN_OF_PROPERTY[collection.kind]
        item_name = None
    fields: dict[str, str] = {}
    dead: dict[str, str | None] = {}
    refused: list[str] = []
    for is_set, element in operations:
        if element.tag in PROTECTED:
            refused.append(element.tag)
        elif element.tag in columns:
            fields[columns[element.tag]] = (element.text or "").strip() if is_set else ""
        else:
            dead[element.tag] = property_xml(element) if is_set else None
    names = list(dict.fromkeys(element.tag for _, element in operations))
    if refused:
        return _patch_answer(base_prefix, path, names, set(refused))
    try:
        context.store.patch_collection(collection.row.id, fields, dead, item_name=item_name,
                                       actor=current_request().actor)
    except ValueError:
        # A value over the Store's size limit: RFC 4918 §9.2.1, no space to record it.
        return _patch_answer(base_prefix, path, names, set(), status=507)
    return _patch_answer(base_prefix, path, names, set())


def _patch_answer(base_prefix: str, path: str, names: list[str], refused: set[str],
                  status: int = 200) -> ET.Element:
    multistatus = ET.Element(clark("D:multistatus"))
    response = ET.SubElement(multistatus, clark("D:response"))
    ET.SubElement(response, clark("D:href")).text = xmlutils.make_href(base_prefix, path)
    groups = [(403, [n for n in names if n in refused]),
              (424 if refused else status, [n for n in names if n not in refused])]
    for status, group in groups:
        if not group:
            continue
        propstat = ET.SubElement(response, clark("D:propstat"))
        prop = ET.SubElement(propstat, clark("D:prop"))
        for name in group:
            ET.SubElement(prop, name)
        ET.SubElement(propstat, clark("D:status")).text = xmlutils.make_response(status)
        if status == 403:
            error = ET.SubElement(propstat, clark("D:error"))
            ET.SubElement(error, clark("D:cannot-modify-protected-property"))
    return multistatus


# ---------------------------------------------------------------- PROPFIND
@dataclass
class PropfindRequest:
    allprop: bool = False
    propname: bool = False
    props: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, request: ET.Element | None) -> PropfindRequest:
        if request is None or len(request) == 0:
            return cls(allprop=True)
        top = request[0]
        if top.tag == clark("D:propname"):
            return cls(propname=True)
        if top.tag == clark("D:prop"):
            return cls(props=[prop.tag for prop in top])
        return cls(allprop=True)


class PropfindCompleter:
    """Rewrites the properties Radicale cannot know in each D:response of a PROPFIND multistatus."""

    def __init__(self, context: DavContext, base_prefix: str, request: PropfindRequest) -> None:
        self.context = context
        self.base_prefix = base_prefix
        self.request = request
        self.actor = current_request().actor
        self._accounts: dict[str, Account | None] = {}
        self._collections: dict[tuple[str, str], Collection | None] = {}
        self._rights: dict[int, frozenset[str]] = {}
        self._item_props: dict[int, dict[str, dict[str, str]]] = {}

    # -- lookups, cached for one multistatus
    def _account(self, login: str) -> Account | None:
        if login not in self._accounts:
            account = self.context.store.get_account(login)
            self._accounts[login] = account if account is not None and account.login == login else None
        return self._accounts[login]

    def _collection(self, login: str, name: str) -> Collection | None:
        key = (login, name)
        if key not in self._collections:
            found = None
            owner = self._account(login)
            collection_id = bound_collection_id(name)
            if collection_id is not None:
                if owner is not None and owner.principal_id == self.actor:
                    shared = shared_by_id(self.context, collection_id)
                    found = shared.collection if shared is not None else None
            elif owner is not None:
                for kind in COLUMN_OF_PROPERTY:
                    try:
                        found = self.context.store.find_collection(owner.principal_id, kind, name, self.actor)
                        break
                    except (NotFound, PermissionDenied):
                        continue
            self._collections[key] = found
        return self._collections[key]

    def _rights_on(self, collection: Collection) -> frozenset[str]:
        if collection.id not in self._rights:
            shared = shared_by_id(self.context, collection.id) if collection.owner_id != self.actor else None
            held = shared.rights if shared is not None else self.context.store.rights_held(collection.id,
                                                                                          actor=self.actor)
            self._rights[collection.id] = dav_rights(collection, held)
        return self._rights[collection.id]

    # -- the rewrite
    def complete(self, multistatus: ET.Element) -> ET.Element:
        for response in multistatus.findall(clark("D:response")):
            href = response.find(clark("D:href"))
            if href is None or not href.text:
                continue
            path = unquote(href.text)
            if not path.startswith(self.base_prefix):
                continue
            parts = [p for p in pathutils.strip_path(pathutils.sanitize_path(path[len(self.base_prefix):])).split("/")
                     if p]
            try:
                overrides = self._overrides(parts)
            except (NotFound, PermissionDenied):
                continue
            if self.request.propname:
                overrides = {name: (status, ET.Element(name)) for name, (status, _) in overrides.items()}
            if overrides:
                _apply(response, overrides)
        return multistatus

    def _wanted(self, name: str, in_allprop: bool = True) -> bool:
        if self.request.props:
            return name in self.request.props
        return in_allprop  # allprop or propname

    def _overrides(self, parts: list[str]) -> dict[str, tuple[int, ET.Element]]:
        out: dict[str, tuple[int, ET.Element]] = {}
        if not parts:
            if self._wanted(PRIVILEGE_SET):
                out[PRIVILEGE_SET] = (200, _privileges(frozenset({"read"}), calendar=False))
            if self._wanted(REPORT_SET):
                out[REPORT_SET] = (200, ET.Element(REPORT_SET))
            return out
        owner = self._account(parts[0])
        if owner is None:
            return out
        if len(parts) == 1:
            self._principal_overrides(owner, out)
            return out
        if len(parts) == 2 and is_schedule_box(parts[1]):
            if self._wanted(RESOURCETYPE):
                out[RESOURCETYPE] = (200, box_resourcetype(parts[1]))
            if self._wanted(PRIVILEGE_SET):
                element = _privileges(frozenset({"read"}), calendar=False)
                if parts[1] == OUTBOX:  # RFC 6638 §6.1.1: the owner may send scheduling requests
                    ET.SubElement(ET.SubElement(element, clark("D:privilege")), clark("C:schedule-send"))
                out[PRIVILEGE_SET] = (200, element)
            return out
        collection = self._collection(parts[0], parts[1])
        if collection is None:
            return out
        if self._wanted(PRIVILEGE_SET):
            out[PRIVILEGE_SET] = (200, _privileges(self._rights_on(collection),
                                                   calendar=collection.kind == "calendar"))
        if self._wanted(REPORT_SET):
            readable = "read" in self._rights_on(collection)
            out[REPORT_SET] = (200, _reports(REPORTS_OF_KIND[collection.kind] if len(parts) == 2 and readable
                                             else ()))
        if len(parts) == 2:
            if collection.owner_id == owner.principal_id:
                self._quota_overrides(owner, out)
            if collection.kind == "addressbook" and self._wanted(ADDRESS_DATA_SET):
                out[ADDRESS_DATA_SET] = (200, _address_data_types())
        if self.request.props and all(name in LIVE for name in self.request.props):
            return out  # the common sync PROPFIND (getetag, getctag …): no dead-property lookup
        if len(parts) == 2:
            dead = self.context.store.get_properties(collection.id, actor=self.actor)
        else:
            if collection.id not in self._item_props:
                self._item_props[collection.id] = self.context.store.item_properties(collection.id, self.actor)
            dead = self._item_props[collection.id].get(parts[2], {})
        for name, xml in dead.items():
            if self.request.propname:
                out[name] = (200, ET.Element(name))
            elif self._wanted(name):
                out[name] = (200, property_element(name, xml))
        return out

    def _principal_overrides(self, owner: Account, out: dict[str, tuple[int, ET.Element]]) -> None:
        principal_href = xmlutils.make_href(self.base_prefix, f"/{owner.login}/")
        own = self.actor == owner.principal_id
        if self._wanted(PRIVILEGE_SET):
            out[PRIVILEGE_SET] = (200, _privileges(frozenset({"admin"}) if own else frozenset({"read"}),
                                                   calendar=False))
        if self._wanted(REPORT_SET):
            out[REPORT_SET] = (200, ET.Element(REPORT_SET))
        for name in PRINCIPAL_HREFS:
            if self._wanted(name):
                element = ET.Element(name)
                ET.SubElement(element, clark("D:href")).text = principal_href
                out[name] = (200, element)
        if own:
            for name, box in ((clark("C:schedule-outbox-URL"), OUTBOX), (clark("C:schedule-inbox-URL"), INBOX)):
                if self._wanted(name, in_allprop=False):
                    element = ET.Element(name)
                    ET.SubElement(element, clark("D:href")).text = xmlutils.make_href(
                        self.base_prefix, f"/{owner.login}/{box}/")
                    out[name] = (200, element)
            if self._wanted(USER_TYPE, in_allprop=False):
                element = ET.Element(USER_TYPE)
                element.text = "INDIVIDUAL"
                out[USER_TYPE] = (200, element)
        if self._wanted(ADDRESS_SET):
            element = ET.Element(ADDRESS_SET)
            for address in self.context.store.account_addresses(owner.login):
                ET.SubElement(element, clark("D:href")).text = f"mailto:{address}"
            ET.SubElement(element, clark("D:href")).text = principal_href
            out[ADDRESS_SET] = (200, element)
        self._quota_overrides(owner, out)

    def _quota_overrides(self, owner: Account, out: dict[str, tuple[int, ET.Element]]) -> None:
        # RFC 4331 §3: not part of allprop; only for those who own the space.
        if not any(name in self.request.props for name in QUOTA_PROPERTIES):
            return
        if self.actor != owner.principal_id:
            return
        used, capacity = self.context.quota.report(self.context.store, owner)["calendar"]
        values = {clark("D:quota-used-bytes"): used, clark("D:quota-available-bytes"): max(0, capacity - used)}
        for name, value in values.items():
            element = ET.Element(name)
            element.text = str(value)
            out[name] = (200, element)


def _privileges(rights: frozenset[str], calendar: bool) -> ET.Element:
    element = ET.Element(PRIVILEGE_SET)
    names: list[str] = []
    for right in ("admin", "write", "read", "bind", "freebusy"):
        if right in rights:
            names.extend(p for p in DAV_PRIVILEGES[right] if p not in names)
    for name in names:
        if name == "read-free-busy":
            if not calendar:
                continue
            tag = clark("C:read-free-busy")  # RFC 4791 §6.1.1
        else:
            tag = clark(f"D:{name}")
        ET.SubElement(ET.SubElement(element, clark("D:privilege")), tag)
    return element


def _address_data_types() -> ET.Element:
    """RFC 6352 §6.2.2: both vCard versions are served (see ``vcard_negotiation``)."""
    element = ET.Element(ADDRESS_DATA_SET)
    for version in VERSIONS:
        data_type = ET.SubElement(element, clark("CR:address-data-type"))
        data_type.set("content-type", "text/vcard")
        data_type.set("version", version)
    return element


def _reports(reports: Iterable[str]) -> ET.Element:
    element = ET.Element(REPORT_SET)
    for name in reports:
        report = ET.SubElement(ET.SubElement(element, clark("D:supported-report")), clark("D:report"))
        ET.SubElement(report, clark(name))
    return element


def _apply(response: ET.Element, overrides: dict[str, tuple[int, ET.Element]]) -> None:
    """Replace or add the overridden properties in a D:response, regrouping its propstats."""
    groups: dict[int, list[ET.Element]] = {}
    for propstat in response.findall(clark("D:propstat")):
        status_element = propstat.find(clark("D:status"))
        try:
            status = int((status_element.text or "").split()[1]) if status_element is not None else 200
        except (IndexError, ValueError):
            status = 500
        prop = propstat.find(clark("D:prop"))
        for element in list(prop) if prop is not None else []:
            if element.tag not in overrides:
                groups.setdefault(status, []).append(element)
        response.remove(propstat)
    for status, element in overrides.values():
        groups.setdefault(status, []).append(element)
    for status in sorted(groups):
        propstat = ET.SubElement(response, clark("D:propstat"))
        prop = ET.SubElement(propstat, clark("D:prop"))
        prop.extend(groups[status])
        ET.SubElement(propstat, clark("D:status")).text = xmlutils.make_response(status)


__all__ = ["PROTECTED", "BadPropertyUpdate", "PropfindCompleter", "PropfindRequest", "proppatch",
           "text_property_xml"]
