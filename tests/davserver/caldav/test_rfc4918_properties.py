"""RFC 4918 properties on calendars and address books: dead properties kept through the Store
(§4, §9.2), protected properties refused (§9.2.1, cannot-modify-protected-property),
Depth: infinity refused (§9.1), and XML entity declarations never expanded."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

D, C, ICAL = "DAV:", "urn:ietf:params:xml:ns:caldav", "http://apple.com/ns/ical/"
XML = {"Content-Type": "application/xml; charset=utf-8"}


@pytest.fixture(scope="module")
def owner(dav) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return dav.new_user()


def _propfind(dav, auth, path: str, *props: str, depth: str = "0") -> ET.Element:  # type: ignore[no-untyped-def]
    inner = "".join(f'<x{n}:{p.split("}")[1]} xmlns:x{n}="{p[1:].split("}")[0]}"/>' for n, p in enumerate(props))
    body = f'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>{inner}</D:prop></D:propfind>'.encode()
    reply = dav.request("PROPFIND", path, auth, body, {"Depth": depth, **XML})
    assert reply.status == 207, reply.text
    return ET.fromstring(reply.body)


def _found(multistatus: ET.Element, name: str) -> ET.Element | None:
    """The property ``name`` from a 200 propstat of the first response, or None."""
    for propstat in multistatus.iter(f"{{{D}}}propstat"):
        if "200" in (propstat.findtext(f"{{{D}}}status") or ""):
            element = propstat.find(f"{{{D}}}prop/{name}")
            if element is not None:
                return element
    return None


def test_rfc4918_9_2_proppatch_keeps_dead_properties_and_propfind_returns_them(dav, owner):
    path = f"/dav/{owner[0]}/calendar/"
    timezone = "BEGIN:VCALENDAR\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Amsterdam\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n"
    body = f"""<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:C="{C}" xmlns:I="{ICAL}"
 xmlns:X="urn:example:x"><D:set><D:prop>
<C:calendar-timezone>{timezone}</C:calendar-timezone><I:calendar-order>3</I:calendar-order>
<X:labels><X:label>work</X:label><X:label>team</X:label></X:labels>
<D:displayname>Agenda</D:displayname></D:prop></D:set></D:propertyupdate>""".encode()
    before = _found(_propfind(dav, owner, path, "{http://calendarserver.org/ns/}getctag"),
                    "{http://calendarserver.org/ns/}getctag")
    reply = dav.request("PROPPATCH", path, owner, body, XML)
    assert reply.status == 207 and "403" not in reply.text and "200 OK" in reply.text
    answer = _propfind(dav, owner, path, f"{{{C}}}calendar-timezone", f"{{{ICAL}}}calendar-order",
                       "{urn:example:x}labels", f"{{{D}}}displayname", "{http://calendarserver.org/ns/}getctag")
    assert "TZID:Europe/Amsterdam" in (_found(answer, f"{{{C}}}calendar-timezone").text or "")
    assert _found(answer, f"{{{ICAL}}}calendar-order").text == "3"
    assert [e.text for e in _found(answer, "{urn:example:x}labels")] == ["work", "team"]
    assert _found(answer, f"{{{D}}}displayname").text == "Agenda"
    after = _found(answer, "{http://calendarserver.org/ns/}getctag")
    assert before is not None and after is not None and before.text != after.text  # getctag moves with properties
    allprop = dav.request("PROPFIND", path, owner, b'<propfind xmlns="DAV:"><allprop/></propfind>', {"Depth": "0"})
    assert "calendar-order" in allprop.text
    remove = f"""<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:I="{ICAL}">
<D:remove><D:prop><I:calendar-order/></D:prop></D:remove></D:propertyupdate>""".encode()
    assert dav.request("PROPPATCH", path, owner, remove, XML).status == 207
    assert _found(_propfind(dav, owner, path, f"{{{ICAL}}}calendar-order"), f"{{{ICAL}}}calendar-order") is None


@pytest.mark.parametrize("protected", ["D:resourcetype", "D:getetag", "C:supported-calendar-component-set"])
def test_rfc4918_9_2_1_protected_property_is_403_cannot_modify_and_nothing_changes(dav, owner, protected):
    path = f"/dav/{owner[0]}/tasks/"
    body = f"""<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:C="{C}"><D:set><D:prop>
<D:displayname>Changed</D:displayname><{protected}/></D:prop></D:set></D:propertyupdate>""".encode()
    reply = dav.request("PROPPATCH", path, owner, body, XML)
    assert reply.status == 207
    answer = ET.fromstring(reply.body)
    statuses = {propstat.find(f"{{{D}}}prop")[0].tag: propstat for propstat in answer.iter(f"{{{D}}}propstat")}
    refused = statuses[ET.QName(D if protected.startswith("D:") else C, protected.split(":")[1]).text]
    assert "403" in refused.findtext(f"{{{D}}}status")
    assert refused.find(f"{{{D}}}error/{{{D}}}cannot-modify-protected-property") is not None
    assert "424" in statuses[f"{{{D}}}displayname"].findtext(f"{{{D}}}status")
    assert _found(_propfind(dav, owner, path, f"{{{D}}}displayname"), f"{{{D}}}displayname").text == "Tasks"


def test_rfc4918_9_2_1_oversized_property_value_is_507_and_not_stored(dav, owner):
    path = f"/dav/{owner[0]}/calendar/"
    body = f"""<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:example:x"><D:set><D:prop>
<X:small>ok</X:small><X:huge>{"x" * 70_000}</X:huge></D:prop></D:set></D:propertyupdate>""".encode()
    reply = dav.request("PROPPATCH", path, owner, body, XML)
    assert reply.status == 207 and "507" in reply.text
    assert _found(_propfind(dav, owner, path, "{urn:example:x}small"), "{urn:example:x}small") is None


def test_rfc4918_9_2_dead_property_on_an_item(dav, owner, make_event):
    item = f"/dav/{owner[0]}/calendar/props.ics"
    assert dav.request("PUT", item, owner, make_event("props@example.org"),
                       {"Content-Type": "text/calendar"}).status == 201
    body = b"""<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:example:x">
<D:set><D:prop><X:note>remember</X:note></D:prop></D:set></D:propertyupdate>"""
    assert dav.request("PROPPATCH", item, owner, body, XML).status == 207
    assert _found(_propfind(dav, owner, item, "{urn:example:x}note"), "{urn:example:x}note").text == "remember"
    listing = _propfind(dav, owner, f"/dav/{owner[0]}/calendar/", "{urn:example:x}note", depth="1")
    assert _found(listing, "{urn:example:x}note").text == "remember"


def test_rfc4791_5_3_1_mkcalendar_keeps_its_properties(dav, owner):
    path = f"/dav/{owner[0]}/mk-props/"
    body = f"""<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="{C}" xmlns:I="{ICAL}"><D:set><D:prop>
<D:displayname>Made</D:displayname><I:calendar-order>7</I:calendar-order>
<C:calendar-timezone>BEGIN:VCALENDAR&#13;
END:VCALENDAR</C:calendar-timezone></D:prop></D:set></C:mkcalendar>""".encode()
    assert dav.request("MKCALENDAR", path, owner, body, XML).status == 201
    answer = _propfind(dav, owner, path, f"{{{ICAL}}}calendar-order", f"{{{C}}}calendar-timezone",
                       f"{{{D}}}displayname")
    assert _found(answer, f"{{{ICAL}}}calendar-order").text == "7"
    assert "BEGIN:VCALENDAR" in _found(answer, f"{{{C}}}calendar-timezone").text
    assert dav.request("DELETE", path, owner).status in (200, 204)


def test_rfc4918_9_1_propfind_depth_infinity_is_403_propfind_finite_depth(dav, owner):
    reply = dav.request("PROPFIND", f"/dav/{owner[0]}/", owner, None, {"Depth": "infinity"})
    assert reply.status == 403
    assert "propfind-finite-depth" in reply.text


def test_xml_entity_declarations_are_refused_not_expanded(dav, owner):
    bomb = b"""<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>
<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&b;</D:displayname></D:prop></D:propfind>"""
    for method in ("PROPFIND", "PROPPATCH", "REPORT"):
        reply = dav.request(method, f"/dav/{owner[0]}/calendar/", owner, bomb, {"Depth": "0", **XML})
        assert reply.status == 400, (method, reply.status)
    assert dav.request("PROPFIND", f"/dav/{owner[0]}/", owner, None, {"Depth": "0"}).status == 207


def test_rfc4918_9_9_move_is_atomic_keeps_dead_properties_and_checks_the_component_set(dav, owner, make_event):
    login = owner[0]
    source = f"/dav/{login}/calendar/mv-atomic.ics"
    assert dav.request("PUT", source, owner, make_event("mv-atomic@example.org"),
                       {"Content-Type": "text/calendar"}).status == 201
    etag = dav.request("GET", source, owner).headers["ETag"]
    note = b"""<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:example:x">
<D:set><D:prop><X:note>travels</X:note></D:prop></D:set></D:propertyupdate>"""
    assert dav.request("PROPPATCH", source, owner, note, XML).status == 207
    refused = dav.request("MOVE", source, owner, headers={"Destination": f"{dav.base_url}{login}/tasks/x.ics"})
    assert refused.status == 403 and "supported-calendar-component" in refused.text
    assert dav.request("GET", source, owner).status == 200  # nothing half-moved
    moved = dav.request("MOVE", source, owner, headers={"Destination": f"{dav.base_url}{login}/calendar/moved.ics"})
    assert moved.status == 201
    assert dav.request("GET", source, owner).status == 404
    target = f"/dav/{login}/calendar/moved.ics"
    assert dav.request("GET", target, owner).headers["ETag"] == etag  # same bytes, same strong ETag
    assert _found(_propfind(dav, owner, target, "{urn:example:x}note"), "{urn:example:x}note").text == "travels"
