"""Index columns extracted from a body when it is written, so reads query SQL.

Calendar objects give component, UID, start/end and a recurrence flag; vCards give
FN and e-mail addresses; messages give the headers SEARCH and listings use. A body
that cannot be parsed gets empty index columns here — validating it is the
frontend's job (it knows the protocol's error to give).
"""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser


@dataclass
class ItemIndex:
    component: str = ""
    ical_uid: str | None = None
    dtstart: dt.datetime | None = None
    dtend: dt.datetime | None = None
    recurring: bool = False
    fn: str = ""
    emails: list[str] = field(default_factory=list)
    # vCards: index column name -> folded search text (kantoor.storage.card_search); empty otherwise.
    card_search: dict[str, str] = field(default_factory=dict)
    subject: str = ""
    from_addr: str = ""
    to_addr: str = ""
    message_id: str = ""
    date: dt.datetime | None = None


def index_for(content_type: str, body: bytes) -> ItemIndex:
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "text/calendar":
        return index_calendar(body)
    if ctype in ("text/vcard", "text/x-vcard"):
        return index_vcard(body)
    if ctype == "message/rfc822":
        return index_message(body)
    return ItemIndex()


def _as_utc(value: dt.date | dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        # Floating time: indexed as UTC; time-range queries widen by a day for it.
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def index_calendar(body: bytes) -> ItemIndex:
    import icalendar

    try:
        cal = icalendar.Calendar.from_ical(body)
    except Exception:
        return ItemIndex()
    for comp in cal.walk():
        if comp.name in ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY"):
            start = comp.get("DTSTART")
            end = comp.get("DTEND") or comp.get("DUE")
            dtstart = _as_utc(start.dt) if start is not None else None
            dtend = _as_utc(end.dt) if end is not None else None
            if dtend is None and dtstart is not None:
                duration = comp.get("DURATION")
                dtend = dtstart + duration.dt if duration is not None else dtstart
            recurring = any(k in comp for k in ("RRULE", "RDATE"))
            uid = comp.get("UID")
            return ItemIndex(
                component=comp.name,
                ical_uid=str(uid) if uid is not None else None,
                dtstart=dtstart,
                dtend=dtend,
                recurring=recurring,
            )
    return ItemIndex()


def card_columns(index: ItemIndex) -> dict[str, str | None]:
    """Every vCard search column with its value: None (not indexed: always a candidate) for non-vCards."""
    from kantoor.storage.card_search import COLUMN_OF_PROPERTY

    return {column: index.card_search.get(column) if index.component == "VCARD" else None
            for column in COLUMN_OF_PROPERTY.values()}


def index_vcard(body: bytes) -> ItemIndex:
    from kantoor.storage.card_search import COLUMN_OF_PROPERTY, card_values, search_column

    fn = ""
    uid: str | None = None
    emails: list[str] = []
    # vCard lines are unfolded by hand: this is index extraction, not validation.
    text = body.decode("utf-8", "replace").replace("\r\n ", "").replace("\r\n\t", "")
    text = text.replace("\n ", "").replace("\n\t", "")
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if not sep:
            continue
        prop = name.split(";", 1)[0].split(".")[-1].upper()
        if prop == "FN":
            fn = value.strip()
        elif prop == "UID":
            uid = value.strip()
        elif prop == "EMAIL":
            emails.append(value.strip().lower())
    values = card_values(text)
    search = {column: search_column(values.get(name, ())) for name, column in COLUMN_OF_PROPERTY.items()}
    return ItemIndex(component="VCARD", ical_uid=uid, fn=fn, emails=emails, card_search=search)


def index_message(body: bytes) -> ItemIndex:
    try:
        headers = BytesHeaderParser(policy=policy.default).parsebytes(body)
    except Exception:
        return ItemIndex()

    def header(name: str) -> str:
        try:
            value = headers.get(name)
            return str(value) if value is not None else ""
        except Exception:  # malformed header: keep the raw text
            raw = headers.get_all(name, failobj=[])
            return str(raw[0]) if raw else ""

    date = None
    raw_date = header("Date")
    if raw_date:
        try:
            date = email.utils.parsedate_to_datetime(raw_date)
        except (TypeError, ValueError):
            date = None
    return ItemIndex(
        subject=header("Subject"),
        from_addr=header("From"),
        to_addr=header("To"),
        message_id=header("Message-ID"),
        date=_as_utc(date) if date else None,
    )
