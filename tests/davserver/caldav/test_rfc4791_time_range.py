"""RFC 4791 §9.9 time-range calendar-query: candidates come from the indexed start/end columns,
recurring objects (unbounded RRULE, RDATE, EXDATE, overridden instances) are still found, and
§9.6.5 expand returns the instances."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

D, C = "DAV:", "urn:ietf:params:xml:ns:caldav"


def _calendar(*components: str) -> bytes:
    body = "".join(components)
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Kantoor tests//EN\r\n{body}END:VCALENDAR\r\n").encode()


def _vevent(uid: str, start: str, end: str, extra: str = "") -> str:
    return (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20200101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n"
            f"SUMMARY:{uid}\r\n{extra}END:VEVENT\r\n")


OBJECTS = {
    "weekly.ics": _calendar(_vevent("weekly", "20200106T090000Z", "20200106T100000Z", "RRULE:FREQ=WEEKLY\r\n")),
    "short.ics": _calendar(_vevent("short", "20200106T090000Z", "20200106T100000Z", "RRULE:FREQ=DAILY;COUNT=3\r\n")),
    "rdate.ics": _calendar(_vevent("rdate", "20200106T090000Z", "20200106T100000Z",
                                   "RDATE:20300115T090000Z\r\n")),
    "exdate.ics": _calendar(_vevent("exdate", "20300110T090000Z", "20300110T100000Z",
                                    "RRULE:FREQ=DAILY;COUNT=10\r\nEXDATE:20300115T090000Z\r\n")),
    "moved.ics": _calendar(
        _vevent("moved", "20200106T090000Z", "20200106T100000Z", "RRULE:FREQ=WEEKLY;COUNT=2\r\n"),
        _vevent("moved", "20300115T120000Z", "20300115T130000Z", "RECURRENCE-ID:20200113T090000Z\r\n")),
    "plain.ics": _calendar(_vevent("plain", "20300115T080000Z", "20300115T083000Z")),
    "elsewhen.ics": _calendar(_vevent("elsewhen", "20300301T080000Z", "20300301T083000Z")),
    "zoned.ics": _calendar(
        "BEGIN:VTIMEZONE\r\nTZID:Europe/Amsterdam\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
        "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n"
        "BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n",
        "BEGIN:VEVENT\r\nUID:zoned\r\nDTSTAMP:20200101T000000Z\r\nDTSTART;TZID=Europe/Amsterdam:20300116T003000\r\n"
        "DTEND;TZID=Europe/Amsterdam:20300116T010000\r\nEND:VEVENT\r\n"),  # 23:30 UTC on the 15th
}


@pytest.fixture(scope="module")
def filled(dav) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    owner = dav.new_user()
    for name, body in OBJECTS.items():
        reply = dav.request("PUT", f"/dav/{owner[0]}/calendar/{name}", owner, body, {"Content-Type": "text/calendar"})
        assert reply.status == 201, (name, reply.text)
    return owner


def _query(dav, owner, start: str, end: str, extra_prop: str = "") -> ET.Element:  # type: ignore[no-untyped-def]
    body = f"""<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="{C}">
<D:prop><D:getetag/>{extra_prop}</D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">
<C:time-range start="{start}" end="{end}"/></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"""
    reply = dav.request("REPORT", f"/dav/{owner[0]}/calendar/", owner, body.encode(),
                        {"Depth": "1", "Content-Type": "application/xml"})
    assert reply.status == 207, reply.text
    return ET.fromstring(reply.body)


def _names(multistatus: ET.Element) -> set[str]:
    return {(r.findtext(f"{{{D}}}href") or "").rsplit("/", 1)[-1] for r in multistatus.findall(f"{{{D}}}response")}


def test_rfc4791_9_9_time_range_finds_recurring_instances_and_skips_the_rest(dav, filled):
    found = _names(_query(dav, filled, "20300115T000000Z", "20300116T000000Z"))
    assert found == {"rdate.ics", "moved.ics", "plain.ics", "zoned.ics"}
    # 2030-01-15 is a Tuesday: the Monday-weekly event is not on it, but on the 14th.
    assert "weekly.ics" in _names(_query(dav, filled, "20300114T000000Z", "20300114T235959Z"))
    assert "weekly.ics" not in _names(_query(dav, filled, "20300115T100000Z", "20300116T000000Z"))
    assert "exdate.ics" in _names(_query(dav, filled, "20300116T000000Z", "20300117T000000Z"))


def test_rfc4791_9_6_5_expand_returns_the_instances_in_the_range(dav, filled):
    answer = _query(dav, filled, "20300114T000000Z", "20300128T000000Z",
                    '<C:calendar-data><C:expand start="20300114T000000Z" end="20300128T000000Z"/></C:calendar-data>')
    for response in answer.findall(f"{{{D}}}response"):
        if (response.findtext(f"{{{D}}}href") or "").endswith("/weekly.ics"):
            data = response.findtext(f".//{{{C}}}calendar-data") or ""
            assert data.count("BEGIN:VEVENT") == 2 and "RRULE" not in data
            assert "RECURRENCE-ID:20300114T090000Z" in data and "RECURRENCE-ID:20300121T090000Z" in data
            break
    else:
        pytest.fail("weekly.ics not in the expanded answer")


def test_rfc4791_7_10_free_busy_query_includes_recurring_instances(dav, filled):
    body = f"""<?xml version="1.0"?><C:free-busy-query xmlns:C="{C}">
<C:time-range start="20300115T000000Z" end="20300116T000000Z"/></C:free-busy-query>""".encode()
    reply = dav.request("REPORT", f"/dav/{filled[0]}/calendar/", filled, body,
                        {"Depth": "1", "Content-Type": "application/xml"})
    assert reply.status == 200 and "BEGIN:VFREEBUSY" in reply.text
    busy = reply.text.replace("\r\n ", "")
    for period in ("20300115T080000Z/20300115T083000Z",  # plain
                   "20300115T090000Z/20300115T100000Z",  # RDATE
                   "20300115T120000Z/20300115T130000Z",  # the moved instance
                   "20300115T233000Z/20300116T000000Z"):  # time zone, clipped to the range
        assert period.split("/")[0] in busy, period
