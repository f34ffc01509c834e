"""RFC 4791: journals (VJOURNAL) in a calendar made for them, the component-set precondition
(§5.3.2.1), and the calendar-data limits limit-recurrence-set (§9.6.6) and limit-freebusy-set
(§9.6.7), which Radicale ignores and Kantoor applies."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from kantoor.davserver.caldav.report_limits import ReportLimits, limit_calendar_data

C = "urn:ietf:params:xml:ns:caldav"
ICS = {"Content-Type": "text/calendar"}


def _journal(uid: str, summary: str = "Notes") -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Kantoor tests//EN\r\nBEGIN:VJOURNAL\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:20261203\r\nSUMMARY:{summary}\r\n"
            "DESCRIPTION:What happened today\r\nEND:VJOURNAL\r\nEND:VCALENDAR\r\n").encode()


def _mkcalendar(dav, user, name: str, component: str) -> None:  # type: ignore[no-untyped-def]
    body = f"""<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="{C}"><D:set><D:prop>
<D:displayname>{name}</D:displayname>
<C:supported-calendar-component-set><C:comp name="{component}"/></C:supported-calendar-component-set>
</D:prop></D:set></C:mkcalendar>""".encode()
    assert dav.request("MKCALENDAR", f"/dav/{user[0]}/{name}/", user, body).status == 201


def _data(reply) -> dict[str, str]:  # type: ignore[no-untyped-def]
    assert reply.status == 207, reply.text
    found = {}
    for response in ET.fromstring(reply.body).iter("{DAV:}response"):
        href = (response.findtext("{DAV:}href") or "").rsplit("/", 1)[-1]
        found[href] = response.findtext(f".//{{{C}}}calendar-data") or ""
    return found


def test_rfc4791_5_3_2_1_journal_calendar_accepts_and_returns_journals(dav, user):
    _mkcalendar(dav, user, "journal", "VJOURNAL")
    assert dav.request("PUT", f"/dav/{user[0]}/journal/j1.ics", user, _journal("j1@example.org"), ICS).status == 201
    calendar = dav.client(user).principal().calendar(cal_id="journal")
    journals = calendar.journals()
    assert [j.icalendar_component["UID"] for j in journals] == ["j1@example.org"]
    assert journals[0].icalendar_component["DESCRIPTION"] == "What happened today"
    query = f"""<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="{C}">
<D:prop><C:calendar-data/></D:prop><C:filter><C:comp-filter name="VCALENDAR">
<C:comp-filter name="VJOURNAL"><C:time-range start="20261201T000000Z" end="20261210T000000Z"/>
</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>""".encode()
    found = _data(dav.request("REPORT", f"/dav/{user[0]}/journal/", user, query, {"Depth": "1"}))
    assert list(found) == ["j1.ics"] and "BEGIN:VJOURNAL" in found["j1.ics"]
    # A VEVENT is refused in the journal-only calendar, and the journal in the event calendar.
    event = _journal("e1@example.org").replace(b"VJOURNAL", b"VEVENT")
    refused = dav.request("PUT", f"/dav/{user[0]}/journal/e1.ics", user, event, ICS)
    assert refused.status == 403 and b"supported-calendar-component" in refused.body


def test_rfc4791_5_3_2_1_event_calendar_refuses_a_journal(dav, user):
    _mkcalendar(dav, user, "meetings", "VEVENT")
    reply = dav.request("PUT", f"/dav/{user[0]}/meetings/j.ics", user, _journal("j2@example.org"), ICS)
    assert reply.status == 403
    assert ET.fromstring(reply.body).find(f"{{{C}}}supported-calendar-component") is not None
    assert dav.request("GET", f"/dav/{user[0]}/meetings/j.ics", user).status == 404


WEEKLY = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Kantoor tests//EN\r\n"
          "BEGIN:VEVENT\r\nUID:weekly@example.org\r\nDTSTAMP:20260101T000000Z\r\n"
          "DTSTART:20261201T100000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=WEEKLY;COUNT=6\r\nSUMMARY:Standup\r\nEND:VEVENT\r\n"
          "BEGIN:VEVENT\r\nUID:weekly@example.org\r\nDTSTAMP:20260101T000000Z\r\nRECURRENCE-ID:20261208T100000Z\r\n"
          "DTSTART:20261208T120000Z\r\nDURATION:PT1H\r\nSUMMARY:Moved early\r\nEND:VEVENT\r\n"
          "BEGIN:VEVENT\r\nUID:weekly@example.org\r\nDTSTAMP:20260101T000000Z\r\nRECURRENCE-ID:20261229T100000Z\r\n"
          "DTSTART:20261229T150000Z\r\nDURATION:PT1H\r\nSUMMARY:Moved late\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def test_rfc4791_9_6_6_limit_recurrence_set_keeps_master_and_overrides_in_range(dav, user):
    assert dav.request("PUT", f"/dav/{user[0]}/calendar/weekly.ics", user, WEEKLY.encode(), ICS).status == 201
    body = f"""<?xml version="1.0"?><C:calendar-multiget xmlns:D="DAV:" xmlns:C="{C}"><D:prop>
<C:calendar-data><C:limit-recurrence-set start="20261207T000000Z" end="20261214T000000Z"/></C:calendar-data>
</D:prop><D:href>/dav/{user[0]}/calendar/weekly.ics</D:href></C:calendar-multiget>""".encode()
    data = _data(dav.request("REPORT", f"/dav/{user[0]}/calendar/", user, body, {"Depth": "1"}))["weekly.ics"]
    assert "RRULE:FREQ=WEEKLY;COUNT=6" in data  # the master
    assert "Moved early" in data and "Moved late" not in data
    # Without the limit the whole object comes back.
    plain = body.replace(b'<C:limit-recurrence-set start="20261207T000000Z" end="20261214T000000Z"/>', b"")
    assert "Moved late" in _data(dav.request("REPORT", f"/dav/{user[0]}/calendar/", user, plain,
                                             {"Depth": "1"}))["weekly.ics"]


def test_rfc4791_9_6_6_limit_without_end_is_a_bad_request(dav, user):
    body = f"""<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="{C}"><D:prop>
<C:calendar-data><C:limit-recurrence-set start="20261207T000000Z"/></C:calendar-data></D:prop>
<C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>""".encode()
    assert dav.request("REPORT", f"/dav/{user[0]}/calendar/", user, body, {"Depth": "1"}).status == 400


def test_rfc4791_9_6_7_limit_freebusy_set_keeps_periods_in_range():
    """Radicale stores no VFREEBUSY resources (a PUT of one is 400), so the limit is checked on the
    function that applies it to every calendar-data of a REPORT answer."""
    freebusy = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Kantoor tests//EN\r\nBEGIN:VFREEBUSY\r\n"
                "UID:fb@example.org\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261201T000000Z\r\n"
                "DTEND:20261231T000000Z\r\nFREEBUSY;FBTYPE=BUSY:20261202T100000Z/PT1H,20261220T100000Z/PT1H\r\n"
                "FREEBUSY;FBTYPE=BUSY-TENTATIVE:20261203T090000Z/20261203T100000Z\r\n"
                "FREEBUSY:20261201T230000Z/20261202T0\r\n 10000Z\r\nEND:VFREEBUSY\r\nEND:VCALENDAR\r\n")
    limit = (dt.datetime(2026, 12, 2, tzinfo=dt.UTC), dt.datetime(2026, 12, 3, tzinfo=dt.UTC))
    data = limit_calendar_data(freebusy, ReportLimits(freebusy=limit))
    lines = [line for line in data.split("\r\n") if line.startswith("FREEBUSY")]
    assert lines == ["FREEBUSY;FBTYPE=BUSY:20261202T100000Z/PT1H", "FREEBUSY:20261201T230000Z/20261202T010000Z"]
    assert "DTSTART:20261201T000000Z" in data  # the rest of the component is untouched


def test_rfc4791_9_6_7_limit_freebusy_set_leaves_events_alone(dav, user, make_event):
    assert dav.request("PUT", f"/dav/{user[0]}/calendar/ev.ics", user, make_event("ev@example.org"),
                       ICS).status == 201
    body = f"""<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" xmlns:C="{C}"><D:prop>
<C:calendar-data><C:limit-freebusy-set start="20261202T000000Z" end="20261203T000000Z"/></C:calendar-data>
</D:prop><C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>""".encode()
    data = _data(dav.request("REPORT", f"/dav/{user[0]}/calendar/", user, body, {"Depth": "1"}))
    assert data["ev.ics"].replace("\r\n", "\n") == make_event("ev@example.org").decode().replace("\r\n", "\n")


def test_rfc4791_9_6_5_expand_is_served_as_before(dav, user):
    """An expanded search (the caldav library's) gives the instances, the override included."""
    assert dav.request("PUT", f"/dav/{user[0]}/calendar/weekly.ics", user, WEEKLY.encode(), ICS).status == 201
    calendar = dav.client(user).principal().calendar(cal_id="calendar")
    found = calendar.search(event=True, expand=True, start=dt.datetime(2026, 12, 7, tzinfo=dt.UTC),
                            end=dt.datetime(2026, 12, 14, tzinfo=dt.UTC))
    assert [str(e.icalendar_component["SUMMARY"]) for e in found] == ["Moved early"]
