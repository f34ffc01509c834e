"""RFC 6638 scheduling, free/busy only: schedule-outbox-URL / schedule-inbox-URL on the principal
(§2.1-2.2), and a VFREEBUSY REQUEST POSTed to the outbox (§5) answered with a schedule-response
holding the busy periods (never the details) of each attendee who shares a group with the requester;
everyone else gets 3.7 (RFC 5546 §3.6), whether they have an account or not."""

from __future__ import annotations

import datetime as dt
import secrets
import xml.etree.ElementTree as ET

C = "{urn:ietf:params:xml:ns:caldav}"
CT = {"Content-Type": "text/calendar"}


def _event(uid: str, start: str, end: str, extra: str = "", overrides: str = "") -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:Secret {uid}\r\n"
            f"{extra}END:VEVENT\r\n{overrides}END:VCALENDAR\r\n").encode()


def _request(organizer: str, attendees: list[str], start: str = "20261130T000000Z",
             end: str = "20261208T000000Z") -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//EN", "METHOD:REQUEST", "BEGIN:VFREEBUSY",
             f"UID:fb-{secrets.token_hex(4)}", "DTSTAMP:20261101T000000Z", f"DTSTART:{start}", f"DTEND:{end}",
             f"ORGANIZER:mailto:{organizer}", *(f"ATTENDEE:mailto:{a}" for a in attendees),
             "END:VFREEBUSY", "END:VCALENDAR"]
    return ("\r\n".join(lines) + "\r\n").encode()


def _responses(reply) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    out = {}
    for response in ET.fromstring(reply.body).iter(f"{C}response"):
        recipient = (response.findtext(f"{C}recipient/{{DAV:}}href") or "").lower()
        out[recipient] = (response.findtext(f"{C}request-status") or "", response.findtext(f"{C}calendar-data") or "")
    return out


def _busy(data: str) -> list[str]:
    lines = data.replace("\r\n", "\n").replace("\n ", "").split("\n")
    return [line.split(":", 1)[1] for line in lines if line.startswith("FREEBUSY;FBTYPE=BUSY:")]


def test_rfc6638_2_principal_announces_outbox_and_inbox(dav, user):
    body = (b'<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><C:schedule-outbox-URL/>'
            b"<C:schedule-inbox-URL/><C:calendar-user-type/></D:prop></D:propfind>")
    reply = dav.request("PROPFIND", f"/dav/{user[0]}/", user, body, {"Depth": "0"})
    assert reply.status == 207
    root = ET.fromstring(reply.body)
    outbox = root.findtext(f".//{C}schedule-outbox-URL/{{DAV:}}href")
    inbox = root.findtext(f".//{C}schedule-inbox-URL/{{DAV:}}href")
    assert outbox and inbox and outbox != inbox
    assert root.findtext(f".//{C}calendar-user-type") == "INDIVIDUAL"
    box = dav.request("PROPFIND", outbox.replace("%40", "@"), user,
                      b'<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/></D:prop></D:propfind>', {"Depth": "0"})
    assert box.status == 207 and "schedule-outbox" in box.text


def test_rfc6638_5_group_freebusy_with_recurrence_and_no_details(dav, server):
    ann, bob, carol = dav.new_user(), dav.new_user(), dav.new_user()
    store = server.core().store
    group = f"FB {secrets.token_hex(3)}"
    store.create_group(group, ann[0])
    store.add_member(group, bob[0])
    put = f"/dav/{bob[0]}/calendar/"
    assert dav.request("PUT", put + "m.ics", bob, _event("meeting", "20261201T100000Z", "20261201T110000Z"),
                       CT).status == 201
    assert dav.request("PUT", put + "t.ics", bob, _event("free", "20261202T100000Z", "20261202T110000Z",
                                                         "TRANSP:TRANSPARENT\r\n"), CT).status == 201
    assert dav.request("PUT", put + "c.ics", bob, _event("off", "20261203T100000Z", "20261203T110000Z",
                                                         "STATUS:CANCELLED\r\n"), CT).status == 201
    assert dav.request("PUT", put + "p.ics", bob, _event("maybe", "20261204T140000Z", "20261204T150000Z",
                                                         "STATUS:TENTATIVE\r\n"), CT).status == 201
    assert dav.request("PUT", put + "late.ics", bob, _event("late", "20270101T100000Z", "20270101T110000Z"),
                       CT).status == 201
    # Daily stand-up from long ago: 08:00-08:30, not on Dec 2, and on Dec 3 moved to 09:00.
    moved = ("BEGIN:VEVENT\r\nUID:standup\r\nDTSTAMP:20260101T000000Z\r\nRECURRENCE-ID:20261203T080000Z\r\n"
             "DTSTART:20261203T090000Z\r\nDTEND:20261203T093000Z\r\nSUMMARY:Secret standup\r\nEND:VEVENT\r\n")
    standup = _event("standup", "20200106T080000Z", "20200106T083000Z",
                     "RRULE:FREQ=DAILY\r\nEXDATE:20261202T080000Z\r\n", moved)
    assert dav.request("PUT", put + "s.ics", bob, standup, CT).status == 201

    reply = dav.request("POST", f"/dav/{ann[0]}/schedule-outbox/", ann,
                        _request(ann[0], [bob[0], carol[0], "nobody@example.invalid"]), CT)
    assert reply.status == 200, reply.text
    answers = _responses(reply)
    status, data = answers[f"mailto:{bob[0]}".lower()]
    assert status.startswith("2.0")
    busy = _busy(data)
    assert "20261201T100000Z/20261201T110000Z" in busy
    assert "20261201T080000Z/20261201T083000Z" in busy and "20261130T080000Z/20261130T083000Z" in busy
    assert not any(p.startswith("20261202T08") for p in busy)  # EXDATE
    assert "20261203T090000Z/20261203T093000Z" in busy and "20261203T080000Z/20261203T083000Z" not in busy
    assert not any(p.startswith("20261202T10") or p.startswith("20261203T10") for p in busy)  # free, cancelled
    assert not any(p.startswith("2027") for p in busy)
    assert "FREEBUSY;FBTYPE=BUSY-TENTATIVE:20261204T140000Z/20261204T150000Z" in data
    assert len(busy) == 7 + 1  # 8 stand-ups in the range less one EXDATE, and the meeting
    assert "Secret" not in reply.text and "SUMMARY" not in reply.text
    # Not in a common group, or no account at all: the same answer.
    assert answers[f"mailto:{carol[0]}".lower()][0].startswith("3.7")
    assert answers["mailto:nobody@example.invalid"][0].startswith("3.7")
    assert not answers[f"mailto:{carol[0]}".lower()][1]

    # Leaving the group ends it at once.
    store.remove_member(group, bob[0])
    again = _responses(dav.request("POST", f"/dav/{ann[0]}/schedule-outbox/", ann, _request(ann[0], [bob[0]]), CT))
    assert again[f"mailto:{bob[0]}".lower()][0].startswith("3.7")


def test_rfc6638_6_1_only_the_owner_posts_as_an_organizer_of_their_own(dav):
    ann, bob = dav.new_user(), dav.new_user()
    assert dav.request("POST", f"/dav/{bob[0]}/schedule-outbox/", ann, _request(ann[0], [bob[0]]), CT).status == 403
    spoofed = dav.request("POST", f"/dav/{ann[0]}/schedule-outbox/", ann, _request(bob[0], [bob[0]]), CT)
    assert spoofed.status == 403 and "organizer-allowed" in spoofed.text
    bad = dav.request("POST", f"/dav/{ann[0]}/schedule-outbox/", ann, b"not a calendar", CT)
    assert bad.status == 400
    unbounded = _request(ann[0], [bob[0]], "20260101T000000Z", "20300101T000000Z")
    too_long = dav.request("POST", f"/dav/{ann[0]}/schedule-outbox/", ann, unbounded, CT)
    assert too_long.status == 400 and "valid-scheduling-message" in too_long.text
    assert dav.request("POST", f"/dav/{ann[0]}/schedule-outbox/", None, _request(ann[0], [bob[0]]), CT).status == 401


def test_caldav_client_freebusy_request(dav, server):
    """The caldav library finds the outbox from the principal and parses the schedule-response."""
    ann, bob = dav.new_user(), dav.new_user()
    store = server.core().store
    group = f"FBC {secrets.token_hex(3)}"
    store.create_group(group, ann[0])
    store.add_member(group, bob[0])
    assert dav.request("PUT", f"/dav/{bob[0]}/calendar/x.ics", bob,
                       _event("x", "20261210T120000Z", "20261210T130000Z"), CT).status == 201
    principal = dav.client(ann).principal()
    answer = principal.freebusy_request(dt.datetime(2026, 12, 10, tzinfo=dt.UTC),
                                        dt.datetime(2026, 12, 11, tzinfo=dt.UTC), [f"mailto:{bob[0]}"])
    assert not answer["errors"]
    data = answer[f"mailto:{bob[0]}"].data
    assert "20261210T120000Z/20261210T130000Z" in data.replace("\r\n ", "").replace("\n ", "")
