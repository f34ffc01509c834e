"""Bad calendar and contact data gets the precondition RFC 4791 §5.3.2.1 / RFC 6352 §6.3.2.1 name,
and nothing is stored."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def owner(dav) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return dav.new_user()


def test_rfc4791_5_3_2_1_malformed_icalendar_is_400_valid_calendar_data(dav, owner):
    path = f"/dav/{owner[0]}/calendar/broken.ics"
    for body in (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\n",  # never ends
                 b"this is not iCalendar at all",
                 b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card\r\nFN:A\r\nEND:VCARD\r\n"):  # a vCard
        reply = dav.request("PUT", path, owner, body, {"Content-Type": "text/calendar"})
        assert reply.status == 400, reply.text
        assert "valid-calendar-data" in reply.text
    assert dav.request("GET", path, owner).status == 404


def test_rfc4791_5_3_2_1_wrong_media_type_is_415_supported_calendar_data(dav, owner, make_event):
    reply = dav.request("PUT", f"/dav/{owner[0]}/calendar/json.ics", owner, make_event("j@example.org"),
                        {"Content-Type": "application/json"})
    assert reply.status == 415 and "supported-calendar-data" in reply.text
    assert dav.request("GET", f"/dav/{owner[0]}/calendar/json.ics", owner).status == 404


def test_rfc6352_6_3_2_1_malformed_vcard_is_400_valid_address_data(dav, owner):
    path = f"/dav/{owner[0]}/contacts/broken.vcf"
    reply = dav.request("PUT", path, owner, b"BEGIN:VCARD\r\nFN:No end\r\n", {"Content-Type": "text/vcard"})
    assert reply.status == 400 and "valid-address-data" in reply.text
    reply = dav.request("PUT", path, owner, b"BEGIN:VCARD\r\nFN:x\r\nEND:VCARD\r\n", {"Content-Type": "text/html"})
    assert reply.status == 415 and "supported-address-data" in reply.text
    assert dav.request("GET", path, owner).status == 404
