"""Busy periods of a calendar user, and the iCalendar VFREEBUSY reply that carries them.

Input are the candidate events the Store selected from its indexed start/end
columns (:meth:`Store.busy_candidates`); recurring ones (RRULE, RDATE, EXDATE,
overridden instances) are expanded here with ``recurring_ical_events``. Only
time leaves this module: never a summary, location or attendee (PRODUCT.md:
members see each other's busy periods, "never the details").

RFC 5545 §3.6.4 / RFC 4791 §7.10: transparent and cancelled events are free;
tentative ones are ``BUSY-TENTATIVE``; floating and all-day times count as UTC
(the server knows no time zone of the attendee).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import icalendar
import recurring_ical_events

from kantoor.storage.models import Item

Period = tuple[dt.datetime, dt.datetime, str]  # start, end, FBTYPE
MAX_INSTANCES_PER_EVENT = 2000  # a bounded answer for any RRULE and range


def _utc(value: dt.date | dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _fbtype(event: icalendar.Component) -> str | None:
    """The FBTYPE an event makes, or None when it leaves the time free."""
    if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return None
    status = str(event.get("STATUS", "CONFIRMED")).upper()
    if status == "CANCELLED":
        return None
    return "BUSY-TENTATIVE" if status == "TENTATIVE" else "BUSY"


def _span(event: icalendar.Component) -> tuple[dt.datetime, dt.datetime] | None:
    start = event.get("DTSTART")
    if start is None:
        return None
    begin = _utc(start.dt)
    end = event.get("DTEND")
    if end is not None:
        return begin, _utc(end.dt)
    duration = event.get("DURATION")
    if duration is not None:
        return begin, begin + duration.dt
    # RFC 5545 §3.6.1: a date lasts the day, a date-time takes no time.
    return begin, begin + (dt.timedelta(days=1) if not isinstance(start.dt, dt.datetime) else dt.timedelta(0))


def busy_periods(candidates: Iterable[tuple[Item, bytes]], start: dt.datetime, end: dt.datetime) -> list[Period]:
    """Merged busy periods within [start, end) of the candidate events (clipped to the range)."""
    periods: list[Period] = []
    for row, body in candidates:
        try:
            calendar = icalendar.Calendar.from_ical(body)
        except ValueError:
            continue
        if row.recurring:
            try:
                query = recurring_ical_events.of(calendar, components=["VEVENT"])
                events = []
                for index, event in enumerate(query.between(start, end)):
                    if index >= MAX_INSTANCES_PER_EVENT:
                        break
                    events.append(event)
            except Exception:  # an RRULE the library cannot expand: the master event only
                events = list(calendar.walk("VEVENT"))[:1]
        else:
            events = list(calendar.walk("VEVENT"))[:1]
        for event in events:
            fbtype = _fbtype(event)
            span = _span(event)
            if fbtype is None or span is None:
                continue
            begin, finish = max(span[0], start), min(span[1], end)
            if begin < finish:  # a zero-length event takes no time
                periods.append((begin, finish, fbtype))
    return _merge(periods)


def _merge(periods: list[Period]) -> list[Period]:
    merged: list[Period] = []
    for fbtype in ("BUSY", "BUSY-TENTATIVE"):
        spans = sorted((p[0], p[1]) for p in periods if p[2] == fbtype)
        current: list[dt.datetime] | None = None
        for begin, finish in spans:
            if current is not None and begin <= current[1]:
                current[1] = max(current[1], finish)
                continue
            if current is not None:
                merged.append((current[0], current[1], fbtype))
            current = [begin, finish]
        if current is not None:
            merged.append((current[0], current[1], fbtype))
    return sorted(merged)


def _stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def freebusy_reply(uid: str, organizer: str, attendee: str, start: dt.datetime, end: dt.datetime,
                   periods: list[Period]) -> str:
    """The iTIP REPLY (RFC 5546 §3.3.2) with one VFREEBUSY for ``attendee``."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Kantoor//Free-busy//EN", "METHOD:REPLY",
             "BEGIN:VFREEBUSY", f"UID:{uid}", f"DTSTAMP:{_stamp(dt.datetime.now(dt.UTC))}",
             f"DTSTART:{_stamp(start)}", f"DTEND:{_stamp(end)}", f"ORGANIZER:{organizer}", f"ATTENDEE:{attendee}"]
    for begin, finish, fbtype in periods:
        line = f"FREEBUSY;FBTYPE={fbtype}:{_stamp(begin)}/{_stamp(finish)}"
        lines.append("\r\n ".join(line[i:i + 74] for i in range(0, len(line), 74)))
    lines += ["END:VFREEBUSY", "END:VCALENDAR"]
    return "\r\n".join(lines) + "\r\n"
