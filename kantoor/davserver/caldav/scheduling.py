"""CalDAV scheduling (RFC 6638) as far as free/busy: the outbox and a VFREEBUSY request.

Each principal has a scheduling outbox ``/dav/<login>/schedule-outbox/`` and inbox
``/dav/<login>/schedule-inbox/`` (announced as ``schedule-outbox-URL`` /
``schedule-inbox-URL``, RFC 6638 §2.1-2.2). A POST of an iTIP ``REQUEST`` with one
VFREEBUSY to one's own outbox (§5) is answered with a ``CALDAV:schedule-response``
holding, per ATTENDEE, the busy periods of that calendar user — if the ACL
engine lets the requester see their free/busy time (members of a common group
do, PRODUCT.md; or an explicit ``freebusy`` grant) — and ``3.7;Invalid calendar
user`` for everyone else, unknown or not, so the answer never tells whether an
address has an account. Invitations POSTed to the outbox are refused; the server
mails invitations to external attendees itself when the organizer writes the event
(iMIP, :mod:`.invitations`), but does not deliver into local attendees' inboxes, so
it does not advertise ``calendar-auto-schedule``.
"""

from __future__ import annotations

import datetime as dt
import uuid
import xml.etree.ElementTree as ET
from http import client

import icalendar
from radicale import types, xmlutils

from kantoor.davserver.caldav.context import DavContext, current_request
from kantoor.davserver.caldav.preconditions import DavPrecondition
from kantoor.davserver.freebusy import busy_periods, freebusy_reply

OUTBOX = "schedule-outbox"
INBOX = "schedule-inbox"
MAX_ATTENDEES = 100
MAX_RANGE = dt.timedelta(days=366)
clark = xmlutils.make_clark


def _address(value: object) -> str:
    text = str(value).strip()
    return text[7:].strip().lower() if text.lower().startswith("mailto:") else text.lower()


def _bad(message: str) -> DavPrecondition:
    return DavPrecondition(400, "C:valid-scheduling-message", message)


def schedule_freebusy(context: DavContext, body: bytes) -> types.WSGIResponse:
    """Answer a POST of ``body`` to the logged-in account's outbox."""
    state = current_request()
    account = state.account
    assert account is not None
    try:
        calendar = icalendar.Calendar.from_ical(body)
    except ValueError:
        raise DavPrecondition(400, "C:valid-calendar-data", "the body is not iCalendar") from None
    if str(calendar.get("METHOD", "")).upper() != "REQUEST":
        raise _bad("only METHOD:REQUEST is handled by the outbox")
    requests = list(calendar.walk("VFREEBUSY"))
    if len(requests) != 1 or any(c.name in ("VEVENT", "VTODO", "VJOURNAL") for c in calendar.subcomponents):
        raise _bad("the outbox answers one VFREEBUSY request; invitations are not delivered")
    request = requests[0]
    organizer = request.get("ORGANIZER")
    if organizer is None or _address(organizer) not in context.store.account_addresses(account.login):
        raise DavPrecondition(403, "C:organizer-allowed", "ORGANIZER must be one of your own addresses")
    start, end = request.get("DTSTART"), request.get("DTEND")
    if start is None or end is None or not isinstance(start.dt, dt.datetime) or not isinstance(end.dt, dt.datetime):
        raise _bad("a free/busy request needs DTSTART and DTEND date-times")
    begin, finish = _utc(start.dt), _utc(end.dt)
    if not begin < finish or finish - begin > MAX_RANGE:
        raise _bad(f"the range must be positive and at most {MAX_RANGE.days} days")
    attendees = request.get("ATTENDEE")
    attendees = attendees if isinstance(attendees, list) else [attendees] if attendees is not None else []
    if not attendees or len(attendees) > MAX_ATTENDEES:
        raise _bad(f"a free/busy request names 1 to {MAX_ATTENDEES} attendees")
    uid = str(request.get("UID") or uuid.uuid4())

    answer = ET.Element(clark("C:schedule-response"))
    for attendee in attendees:
        response = ET.SubElement(answer, clark("C:response"))
        recipient = ET.SubElement(response, clark("C:recipient"))
        ET.SubElement(recipient, clark("D:href")).text = str(attendee)
        status = ET.SubElement(response, clark("C:request-status"))
        try:
            who = context.store.resolve_recipient(_address(attendee))
        except ValueError:  # not an address at all
            who = None
        candidates = (context.store.busy_candidates(who.principal_id, begin, finish, state.actor)
                      if who is not None else None)
        if candidates is None:
            status.text = "3.7;Invalid calendar user"
            continue
        status.text = "2.0;Success"
        periods = busy_periods(candidates, begin, finish)
        data = ET.SubElement(response, clark("C:calendar-data"))
        data.text = freebusy_reply(uid, str(organizer), f"mailto:{who.login}", begin, finish, periods)
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    return client.OK, headers, ET.tostring(answer, encoding="unicode", xml_declaration=True), None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def is_schedule_box(name: str) -> bool:
    return name in (OUTBOX, INBOX)


def box_resourcetype(name: str) -> ET.Element:
    """RFC 6638 §2.1/§2.2: the outbox and inbox are collections of their own kind."""
    element = ET.Element(clark("D:resourcetype"))
    ET.SubElement(element, clark("D:collection"))
    ET.SubElement(element, clark("C:schedule-outbox" if name == OUTBOX else "C:schedule-inbox"))
    return element
