"""RFC 4791 (CalDAV) with a real client library: discovery, the default calendar,
event round trips, calendar-query / calendar-multiget, and the PUT preconditions."""

from __future__ import annotations

import datetime as dt
from urllib.parse import unquote, urlparse

import caldav


def test_principal_discovery_finds_home_and_default_calendars(dav, user):
    principal = dav.client(user).principal()
    assert unquote(urlparse(str(principal.url)).path) == f"/dav/{user[0]}/"
    home = unquote(urlparse(str(principal.calendar_home_set.url)).path)
    assert home == f"/dav/{user[0]}/"
    names = {c.get_display_name(): unquote(urlparse(str(c.url)).path) for c in principal.calendars()}
    assert names["Calendar"] == f"/dav/{user[0]}/calendar/"
    assert names["Tasks"] == f"/dav/{user[0]}/tasks/"


def test_event_save_read_back_and_delete(dav, user):
    calendar = dav.client(user).principal().calendar(cal_id="calendar")
    saved = calendar.save_event(
        dtstart=dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC),
        dtend=dt.datetime(2026, 12, 1, 11, tzinfo=dt.UTC),
        uid="roundtrip-1@example.org", summary="Planning")
    fetched = calendar.event_by_uid("roundtrip-1@example.org")
    assert fetched.icalendar_component["SUMMARY"] == "Planning"
    assert [e.icalendar_component["UID"] for e in calendar.events()] == ["roundtrip-1@example.org"]
    saved.delete()
    assert calendar.events() == []


def test_calendar_query_time_range(dav, user, make_event):
    login = user[0]
    for n, day in enumerate(("01", "15", "28")):
        reply = dav.request("PUT", f"/dav/{login}/calendar/q{n}.ics", user,
                            make_event(f"q{n}@example.org", start=f"202612{day}T100000Z", end=f"202612{day}T110000Z"),
                            {"Content-Type": "text/calendar"})
        assert reply.status == 201
    calendar = dav.client(user).principal().calendar(cal_id="calendar")
    found = calendar.search(event=True, start=dt.datetime(2026, 12, 10, tzinfo=dt.UTC),
                            end=dt.datetime(2026, 12, 20, tzinfo=dt.UTC))
    assert [e.icalendar_component["UID"] for e in found] == ["q1@example.org"]


def test_calendar_multiget_returns_data_and_404_for_missing(dav, user, make_event):
    login = user[0]
    assert dav.request("PUT", f"/dav/{login}/calendar/m1.ics", user, make_event("m1@example.org"),
                       {"Content-Type": "text/calendar"}).status == 201
    body = f"""<?xml version="1.0" encoding="utf-8"?>
<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:getetag/><C:calendar-data/></D:prop>
  <D:href>/dav/{login}/calendar/m1.ics</D:href>
  <D:href>/dav/{login}/calendar/missing.ics</D:href>
</C:calendar-multiget>""".encode()
    reply = dav.request("REPORT", f"/dav/{login}/calendar/", user, body,
                        {"Depth": "1", "Content-Type": "application/xml"})
    assert reply.status == 207
    assert "UID:m1@example.org" in reply.text
    assert "missing.ics</href><status>HTTP/1.1 404 Not Found" in reply.text.replace("\n", "")


def test_put_if_match_mismatch_is_412_and_if_none_match_on_existing_is_412(dav, user, make_event):
    path = f"/dav/{user[0]}/calendar/pre.ics"
    created = dav.request("PUT", path, user, make_event("pre@example.org"), {"Content-Type": "text/calendar"})
    assert created.status == 201
    etag = created.headers["ETag"]
    stale = dav.request("PUT", path, user, make_event("pre@example.org", summary="B"),
                        {"Content-Type": "text/calendar", "If-Match": '"not-the-etag"'})
    assert stale.status == 412
    again = dav.request("PUT", path, user, make_event("pre@example.org", summary="C"),
                        {"Content-Type": "text/calendar", "If-None-Match": "*"})
    assert again.status == 412
    fresh = dav.request("PUT", path, user, make_event("pre@example.org", summary="D"),
                        {"Content-Type": "text/calendar", "If-Match": etag})
    assert fresh.status == 204
    assert "SUMMARY:D" in dav.request("GET", path, user).text


def test_second_object_with_same_uid_is_409_no_uid_conflict(dav, user, make_event):
    login = user[0]
    assert dav.request("PUT", f"/dav/{login}/calendar/u1.ics", user, make_event("same@example.org"),
                       {"Content-Type": "text/calendar"}).status == 201
    clash = dav.request("PUT", f"/dav/{login}/calendar/u2.ics", user, make_event("same@example.org"),
                        {"Content-Type": "text/calendar"})
    assert clash.status == 409
    assert "no-uid-conflict" in clash.text


def test_mkcalendar_and_proppatch_displayname_and_color(dav, user):
    principal = dav.client(user).principal()
    created = principal.make_calendar(name="Work", cal_id="work")
    assert unquote(urlparse(str(created.url)).path) == f"/dav/{user[0]}/work/"
    created.set_properties([caldav.elements.dav.DisplayName("Work (renamed)")])
    body = b"""<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:I="http://apple.com/ns/ical/">
<D:set><D:prop><I:calendar-color>#FF0000</I:calendar-color></D:prop></D:set></D:propertyupdate>"""
    assert dav.request("PROPPATCH", f"/dav/{user[0]}/work/", user, body).status == 207
    names = {c.get_display_name() for c in principal.calendars()}
    assert "Work (renamed)" in names
    listing = dav.request("PROPFIND", f"/dav/{user[0]}/work/", user,
                          b'<propfind xmlns="DAV:"><prop><C xmlns="http://apple.com/ns/ical/" /></prop></propfind>'
                          .replace(b"<C ", b"<calendar-color "), {"Depth": "0"})
    assert "#FF0000" in listing.text
    assert dav.request("MKCALENDAR", f"/dav/{user[0]}/work/", user).status == 409
    created.delete()
    assert "Work (renamed)" not in {c.get_display_name() for c in principal.calendars()}


def test_sync_collection_reports_only_changes(dav, user, make_event):
    calendar = dav.client(user).principal().calendar(cal_id="calendar")
    login = user[0]
    assert dav.request("PUT", f"/dav/{login}/calendar/s1.ics", user, make_event("s1@example.org"),
                       {"Content-Type": "text/calendar"}).status == 201
    first = calendar.objects_by_sync_token(load_objects=False)
    assert len(list(first)) == 1
    assert dav.request("PUT", f"/dav/{login}/calendar/s2.ics", user, make_event("s2@example.org"),
                       {"Content-Type": "text/calendar"}).status == 201
    assert dav.request("DELETE", f"/dav/{login}/calendar/s1.ics", user).status == 200
    body = f"""<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:">
<D:sync-token>{first.sync_token}</D:sync-token><D:sync-level>1</D:sync-level>
<D:prop><D:getetag/></D:prop></D:sync-collection>""".encode()
    reply = dav.request("REPORT", f"/dav/{login}/calendar/", user, body, {"Content-Type": "application/xml"})
    assert reply.status == 207
    text = reply.text.replace("\n", "")
    assert "s2.ics</href><propstat>" in text
    assert "s1.ics</href><status>HTTP/1.1 404 Not Found" in text
    bad = body.replace(first.sync_token.encode(), b"urn:kantoor:sync:0.0:5")
    assert dav.request("REPORT", f"/dav/{login}/calendar/", user, bad,
                       {"Content-Type": "application/xml"}).status == 403


def test_move_event_to_another_calendar_and_rename(dav, user, make_event):
    login = user[0]
    source = f"/dav/{login}/calendar/mv.ics"
    put = dav.request("PUT", source, user, make_event("mv@example.org"), {"Content-Type": "text/calendar"})
    assert put.status == 201
    moved = dav.request("MOVE", source, user, headers={"Destination": f"{dav.base_url}{login}/work-moves/mv.ics"})
    assert moved.status == 409  # no such calendar yet
    dav.client(user).principal().make_calendar(name="Moves", cal_id="work-moves")
    moved = dav.request("MOVE", source, user, headers={"Destination": f"{dav.base_url}{login}/work-moves/mv.ics"})
    assert moved.status == 201
    assert dav.request("GET", source, user).status == 404
    renamed = dav.request("MOVE", f"/dav/{login}/work-moves/mv.ics", user,
                          headers={"Destination": f"{dav.base_url}{login}/work-moves/renamed.ics"})
    assert renamed.status == 201
    got = dav.request("GET", f"/dav/{login}/work-moves/renamed.ics", user)
    assert got.status == 200 and "UID:mv@example.org" in got.text


def test_event_in_tasks_only_calendar_is_403_supported_calendar_component(dav, user, make_event):
    reply = dav.request("PUT", f"/dav/{user[0]}/tasks/ev.ics", user, make_event("not-a-task@example.org"),
                        {"Content-Type": "text/calendar"})
    assert reply.status == 403
    assert "supported-calendar-component" in reply.text
    todo = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VTODO\r\nUID:todo-1@example.org\r\n"
            b"DTSTAMP:20260101T000000Z\r\nSUMMARY:Buy milk\r\nEND:VTODO\r\nEND:VCALENDAR\r\n")
    assert dav.request("PUT", f"/dav/{user[0]}/tasks/todo.ics", user, todo,
                       {"Content-Type": "text/calendar"}).status == 201
