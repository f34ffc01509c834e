"""The REPORT limits Radicale ignores, applied to its multistatus answer.

- ``CALDAV:limit-recurrence-set`` (RFC 4791 §9.6.6): of a recurring component, the
  master and only the overridden instances that overlap the range (or that change
  every instance from one in the range on, ``RANGE=THISANDFUTURE``) are returned.
- ``CALDAV:limit-freebusy-set`` (RFC 4791 §9.6.7): of a VFREEBUSY, only the FREEBUSY
  periods that overlap the range are returned.
- ``CARDDAV:limit``/``nresults`` (RFC 6352 §8.6.1): an addressbook-query answers at
  most ``nresults`` cards; when it had more, the multistatus says so with a 507
  response for the request-URI carrying ``DAV:number-of-matches-within-limits``.

``CALDAV:expand`` (which Radicale does) takes precedence over limit-recurrence-set,
as the two cannot both apply to one calendar-data.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import icalendar
from radicale import xmlutils

clark = xmlutils.make_clark
CALENDAR_DATA = clark("C:calendar-data")
INSTANCE_COMPONENTS = ("VEVENT", "VTODO", "VJOURNAL")
Range = tuple[dt.datetime, dt.datetime]
_LOGICAL_LINE = re.compile(r"\r\n(?![ \t])")


@dataclass(frozen=True)
class ReportLimits:
    recurrence: Range | None = None
    freebusy: Range | None = None
    nresults: int | None = None

    @property
    def rewrites_calendar_data(self) -> bool:
        return self.recurrence is not None or self.freebusy is not None


def _utc(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text.strip(), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"a limit's start/end must be a UTC date-time, not {text!r}") from None


def _range(element: ET.Element | None) -> Range | None:
    if element is None:
        return None
    start, end = _utc(element.get("start")), _utc(element.get("end"))
    if start is None or end is None or end <= start:
        raise ValueError("a limit needs a start before its end")  # RFC 4791 §9.6.6: both are required
    return start, end


def parse_limits(request: ET.Element) -> ReportLimits:
    """The limits a REPORT body asks for; ValueError (400) for a malformed one."""
    recurrence = None
    if request.find(f".//{clark('C:expand')}") is None:
        recurrence = _range(request.find(f".//{clark('C:limit-recurrence-set')}"))
    freebusy = _range(request.find(f".//{clark('C:limit-freebusy-set')}"))
    nresults = None
    limit = request.find(clark("CR:limit"))
    if limit is not None:
        element = limit.find(clark("CR:nresults"))
        try:
            nresults = int((element.text or "").strip()) if element is not None else None
        except ValueError:
            raise ValueError("CARDDAV:nresults must be a number") from None
        if nresults is None or nresults < 0:
            raise ValueError("CARDDAV:limit needs a non-negative nresults")
    return ReportLimits(recurrence, freebusy, nresults)


def _as_utc(value: dt.date | dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    # Floating times are taken as UTC, as the time-range index does.
    return value.astimezone(dt.UTC) if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _span(component: icalendar.cal.Component) -> Range | None:
    """Where an overridden instance lies: its own DTSTART..DTEND/DUE/DURATION (else its RECURRENCE-ID)."""
    start_prop = component.get("DTSTART") or component.get("RECURRENCE-ID")
    if start_prop is None:
        return None
    raw_start = start_prop.dt
    start = _as_utc(raw_start)
    end_prop = component.get("DTEND") or component.get("DUE")
    if end_prop is not None:
        end = _as_utc(end_prop.dt)
    elif component.get("DURATION") is not None:
        end = start + component["DURATION"].dt
    elif not isinstance(raw_start, dt.datetime):
        end = start + dt.timedelta(days=1)  # RFC 4791 §9.9: an all-day instance lasts the day
    else:
        end = start
    return start, end


def _overlaps(span: Range, limit: Range) -> bool:
    start, end = span
    if start == end:
        return limit[0] <= start < limit[1]
    return start < limit[1] and end > limit[0]


def _keep_override(component: icalendar.cal.Component, limit: Range) -> bool:
    recurrence_id = component.get("RECURRENCE-ID")
    if recurrence_id is None:
        return True  # the master, or a non-recurring component
    if str(recurrence_id.params.get("RANGE", "")).upper() == "THISANDFUTURE" \
            and _as_utc(recurrence_id.dt) < limit[1]:
        return True
    span = _span(component)
    return span is None or _overlaps(span, limit)


def _period(text: str) -> Range:
    start_text, _, end_text = text.partition("/")
    start = _as_utc(icalendar.prop.vDDDTypes.from_ical(start_text))
    if end_text.upper().startswith(("P", "+P", "-P")):
        return start, start + icalendar.prop.vDuration.from_ical(end_text)
    return start, _as_utc(icalendar.prop.vDDDTypes.from_ical(end_text))


def _limit_freebusy_line(line: str, limit: Range) -> str | None:
    """One unfolded FREEBUSY line with only the periods overlapping ``limit`` (None: none left)."""
    head, _, value = line.partition(":")
    kept = [p for p in value.split(",") if p.strip() and _overlaps(_period(p.strip()), limit)]
    return f"{head}:{','.join(kept)}" if kept else None


def _limit_freebusy(text: str, limit: Range) -> str:
    out = []
    for line in _LOGICAL_LINE.split(text):  # each keeps its own folding
        if line.split(":", 1)[0].split(";", 1)[0].upper() != "FREEBUSY":
            out.append(line)
            continue
        limited = _limit_freebusy_line(re.sub(r"\r\n[ \t]", "", line), limit)
        if limited is not None:
            out.append(limited)
    return "\r\n".join(out)


def limit_calendar_data(text: str, limits: ReportLimits) -> str:
    """One calendar-data text with the recurrence-set and free/busy limits applied."""
    if limits.recurrence is not None:
        calendar = icalendar.Calendar.from_ical(text)
        kept = [c for c in calendar.subcomponents
                if c.name not in INSTANCE_COMPONENTS or _keep_override(c, limits.recurrence)]
        if len(kept) != len(calendar.subcomponents):
            calendar.subcomponents[:] = kept
            text = calendar.to_ical().decode("utf-8")
    if limits.freebusy is not None and "FREEBUSY" in text.upper():
        text = _limit_freebusy(text.replace("\n", "\r\n").replace("\r\r\n", "\r\n"), limits.freebusy)
    return text


def apply_calendar_limits(multistatus: ET.Element, limits: ReportLimits) -> None:
    """Rewrite every calendar-data of a REPORT answer under ``limits``, in place."""
    for element in multistatus.iter(CALENDAR_DATA):
        if element.text:
            try:
                element.text = limit_calendar_data(element.text, limits)
            except (ValueError, TypeError, KeyError):
                pass  # a stored object the limit cannot read is served whole rather than not at all


def apply_result_limit(multistatus: ET.Element, nresults: int, request_href: str) -> None:
    """Keep the first ``nresults`` responses; if more matched, add the 507 of RFC 6352 §8.6.1."""
    responses = multistatus.findall(clark("D:response"))
    if len(responses) <= nresults:
        return
    for response in responses[nresults:]:
        multistatus.remove(response)
    response = ET.SubElement(multistatus, clark("D:response"))
    ET.SubElement(response, clark("D:href")).text = request_href
    ET.SubElement(response, clark("D:status")).text = "HTTP/1.1 507 Insufficient Storage"
    error = ET.SubElement(response, clark("D:error"))
    ET.SubElement(error, clark("D:number-of-matches-within-limits"))
