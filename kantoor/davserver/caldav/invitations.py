"""iMIP invitations (RFC 6047) for events an account organizes: iTIP (RFC 5546) by mail.

When the logged-in account PUTs, changes or deletes a calendar object whose ORGANIZER
is one of its own addresses, every ATTENDEE that is not an account of this server gets
a mail through the outbound queue, From the organizer:

- ``METHOD:REQUEST`` when the object is new, when an attendee is added (to that
  attendee), and when SEQUENCE grows or a property that matters to an attendee changes
  (times, recurrence, summary, location, description, status — to every attendee);
  a client re-uploading the same event (a sync, a new DTSTAMP, an alarm) sends nothing;
- ``METHOD:CANCEL`` to an attendee removed from the object, and to everyone when the
  object is deleted or gets ``STATUS:CANCELLED``.

``SCHEDULE-AGENT=CLIENT`` (or ``NONE``) on the ORGANIZER leaves the whole object to the
client, and on an ATTENDEE that attendee (RFC 6638 §7.1). The SCHEDULE-* parameters
and the organizer's alarms are not sent (RFC 6638 §3.2, RFC 5546 §3.2).

Attendees who are accounts here are not mailed: delivering to their scheduling inbox
(RFC 6638 implicit scheduling) is not implemented, so ``calendar-auto-schedule`` is not
advertised. The mails are queued after the object's write commits (a failure to queue
is logged, never undoes the PUT). Sending needs the plan's ``smtp`` feature, and the
invitations count against the account's hourly sending limit like submitted mail.
"""

from __future__ import annotations

import copy
import datetime as dt
import email.utils
import logging
from dataclasses import dataclass, replace
from email.message import EmailMessage

import icalendar

from kantoor.davserver.caldav.context import DavContext
from kantoor.storage.models import Account
from kantoor.storage.outbound import hourly_limit_reached, server_mail

log = logging.getLogger(__name__)

SCHEDULED = ("VEVENT", "VTODO")
# What an attendee sees of an event; DTSTAMP, alarms, PARTSTATs and X- properties are not it.
SIGNIFICANT = ("DTSTART", "DTEND", "DURATION", "DUE", "RRULE", "RDATE", "EXDATE", "SUMMARY", "LOCATION",
               "DESCRIPTION", "STATUS")
SCHEDULE_PARAMS = ("SCHEDULE-AGENT", "SCHEDULE-STATUS", "SCHEDULE-FORCE-SEND")
MAX_RECIPIENTS = 100  # one PUT never floods the queue


def _address(value: object) -> str:
    text = str(value).strip()
    return text[7:].strip().lower() if text.lower().startswith("mailto:") else ""


def _agent(prop: object) -> str:
    params = getattr(prop, "params", {})
    return str(params.get("SCHEDULE-AGENT", "SERVER")).upper()


def _props(component: icalendar.cal.Component, name: str) -> list[object]:
    value = component.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Scheduled:
    """The scheduling facts of one stored calendar object."""

    calendar: icalendar.Calendar
    uid: str
    organizer: str
    organizer_name: str
    organizer_agent: str
    attendees: dict[str, str]  # address → SCHEDULE-AGENT
    sequence: int
    fingerprint: bytes
    cancelled: bool
    summary: str
    start: str

    def recipients(self) -> set[str]:
        """The attendees the server schedules for (not the organizer, not SCHEDULE-AGENT=CLIENT)."""
        return {a for a, agent in self.attendees.items() if agent == "SERVER" and a != self.organizer}


def read_scheduled(body: bytes | None) -> Scheduled | None:
    """The organizer, attendees, SEQUENCE and significant properties of an object; None when it has
    no ORGANIZER with a mailto: address (nothing to schedule) or does not parse."""
    if not body or b"ORGANIZER" not in body.upper():
        return None
    try:
        calendar = icalendar.Calendar.from_ical(body)
    except ValueError:
        return None
    components = [c for c in calendar.subcomponents if c.name in SCHEDULED]
    organizers = [c["ORGANIZER"] for c in components if c.get("ORGANIZER") is not None]
    if not organizers or not _address(organizers[0]):
        return None
    organizer = organizers[0]
    attendees: dict[str, str] = {}
    fingerprint = []
    for component in sorted(components, key=lambda c: str(c.get("RECURRENCE-ID", ""))):
        for attendee in _props(component, "ATTENDEE"):
            address = _address(attendee)
            if address:
                attendees[address] = _agent(attendee)
        fingerprint.append(str(component.get("RECURRENCE-ID", "")).encode())
        for name in SIGNIFICANT:
            fingerprint.extend(p.to_ical() if hasattr(p, "to_ical") else str(p).encode()
                               for p in _props(component, name))
    master = next((c for c in components if c.get("RECURRENCE-ID") is None), components[0])
    try:
        sequence = int(master.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        sequence = 0
    start = master.get("DTSTART")
    return Scheduled(
        calendar=calendar, uid=str(master.get("UID", "")), organizer=_address(organizer),
        organizer_name=str(getattr(organizer, "params", {}).get("CN", "")), organizer_agent=_agent(organizer),
        attendees=attendees, sequence=sequence, fingerprint=b"\x00".join(fingerprint),
        cancelled=str(master.get("STATUS", "")).upper() == "CANCELLED", summary=str(master.get("SUMMARY", "")),
        start=start.dt.isoformat() if start is not None and hasattr(start.dt, "isoformat") else "")


@dataclass(frozen=True)
class Message:
    method: str  # REQUEST or CANCEL
    recipients: tuple[str, ...]
    source: Scheduled
    sequence: int
    update: bool = False  # a REQUEST that changes an invitation already sent


def plan(old: Scheduled | None, new: Scheduled | None, own: set[str]) -> list[Message]:
    """The iTIP messages a change from ``old`` to ``new`` (None: absent) calls for; the server
    sends only for an organizer among the ``own`` addresses that leaves scheduling to it."""

    def served(scheduled: Scheduled | None) -> bool:
        return scheduled is not None and scheduled.organizer in own and scheduled.organizer_agent == "SERVER"

    messages = []
    if old is not None and (new is None or new.organizer != old.organizer or not served(new)):
        # Deleted, or no longer this organizer's to schedule: what was sent is withdrawn.
        if served(old) and not old.cancelled:
            messages.append(Message("CANCEL", tuple(sorted(old.recipients())), old, old.sequence + 1))
        old = None
    if new is not None and served(new):
        targets = new.recipients()
        if new.cancelled:
            if old is None or not old.cancelled:
                messages.append(Message("CANCEL", tuple(sorted(targets)), new, new.sequence))
        elif old is None:
            messages.append(Message("REQUEST", tuple(sorted(targets)), new, new.sequence))
        else:
            removed = old.recipients() - set(new.attendees)
            messages.append(Message("CANCEL", tuple(sorted(removed)), new, max(new.sequence, old.sequence + 1)))
            changed = new.sequence > old.sequence or new.fingerprint != old.fingerprint or old.cancelled
            added = targets - old.recipients()
            messages.append(Message("REQUEST", tuple(sorted(added)), new, new.sequence))
            if changed:
                messages.append(Message("REQUEST", tuple(sorted(targets - added)), new, new.sequence, update=True))
    return [m for m in messages if m.recipients]


def _clean(prop: object) -> None:
    params = getattr(prop, "params", None)
    if params is not None:
        for name in SCHEDULE_PARAMS:
            params.pop(name, None)


def itip_calendar(message: Message, recipient: str) -> icalendar.Calendar:
    """The iTIP object of ``message`` for one recipient (RFC 5546 §3.2.2 REQUEST, §3.2.5 CANCEL)."""
    source = message.source.calendar
    calendar = icalendar.Calendar()
    for name, value in source.items():
        if name != "METHOD":
            calendar[name] = value
    calendar["METHOD"] = message.method
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if message.method == "REQUEST":
        for component in source.subcomponents:
            if component.name == "VTIMEZONE":
                calendar.add_component(copy.deepcopy(component))
            elif component.name in SCHEDULED:
                sent = copy.deepcopy(component)
                sent.subcomponents[:] = [c for c in sent.subcomponents if c.name != "VALARM"]
                for prop in [*_props(sent, "ORGANIZER"), *_props(sent, "ATTENDEE")]:
                    _clean(prop)
                sent.pop("DTSTAMP", None)
                sent.add("DTSTAMP", now)
                calendar.add_component(sent)
        return calendar
    master = next((c for c in source.subcomponents if c.name in SCHEDULED and c.get("RECURRENCE-ID") is None),
                  next(c for c in source.subcomponents if c.name in SCHEDULED))
    cancel = icalendar.cal.Component()
    cancel.name = master.name
    cancel.add("UID", message.source.uid)
    cancel.add("DTSTAMP", now)
    cancel.add("SEQUENCE", message.sequence)
    organizer = copy.deepcopy(master["ORGANIZER"])
    _clean(organizer)
    cancel.add("ORGANIZER", organizer)
    attendee = next((copy.deepcopy(a) for a in _props(master, "ATTENDEE") if _address(a) == recipient),
                    icalendar.vCalAddress(f"mailto:{recipient}"))
    _clean(attendee)
    cancel.add("ATTENDEE", attendee)
    for name in ("DTSTART", "SUMMARY"):
        if master.get(name) is not None:
            cancel.add(name, master[name])
    cancel.add("STATUS", "CANCELLED")
    calendar.add_component(cancel)
    return calendar


def compose(message: Message, recipient: str) -> EmailMessage:
    """The iMIP mail (RFC 6047 §2-3) to one recipient: a text part and the text/calendar part."""
    source = message.source
    summary = source.summary or "(no title)"
    organizer = source.organizer_name or source.organizer
    mail = EmailMessage()
    mail["From"] = email.utils.formataddr((source.organizer_name, source.organizer))
    mail["To"] = recipient
    if message.method == "CANCEL":
        mail["Subject"] = f"Cancelled: {summary}"
        text = f"{organizer} cancelled \"{summary}\"{f' ({source.start})' if source.start else ''}.\n"
    else:
        mail["Subject"] = f"{'Updated invitation' if message.update else 'Invitation'}: {summary}"
        text = (f"{organizer} invites you to \"{summary}\"{f' ({source.start})' if source.start else ''}.\n"
                "Your calendar program shows the invitation and lets you answer it.\n")
    mail.set_content(text)
    ics = itip_calendar(message, recipient).to_ical().decode("utf-8")
    # RFC 6047 §2.4: the method parameter repeats the object's METHOD.
    mail.add_alternative(ics, subtype="calendar", params={"method": message.method}, cte="quoted-printable")
    return mail


def _over_hourly_limit(context: DavContext, account: Account) -> bool:
    """The submission limits (``delivery.max_messages_per_hour``, ``max_recipients_per_hour``) hold for
    invitations too; each one goes to one recipient."""
    delivery = context.settings.delivery
    if delivery.max_messages_per_hour <= 0 and delivery.max_recipients_per_hour <= 0:
        return False
    sent = context.store.sent_since(account.id, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    return hourly_limit_reached(sent, delivery.max_messages_per_hour, delivery.max_recipients_per_hour, 1) is not None


def send_invitations(context: DavContext, account: Account, old_body: bytes | None, new_body: bytes | None) -> int:
    """Queue the iMIP mails a PUT or DELETE by ``account`` calls for; returns how many were queued."""
    if not context.settings.delivery.imip_invitations:
        return 0
    new = read_scheduled(new_body)
    old = read_scheduled(old_body)
    if new is None and old is None:
        return 0
    store = context.store
    own = {a.lower() for a in store.account_addresses(account.login)}
    messages = plan(old, new, own)
    if not messages:
        return 0
    if not context.quota.allows(account, "smtp"):
        log.info("%s may not send mail (plan); no iMIP mail for %s", account.login, messages[0].source.uid)
        return 0
    queued = 0
    for message in messages:
        for recipient in message.recipients[:MAX_RECIPIENTS]:
            if store.resolve_recipient(recipient) is not None:
                continue  # an account here: its scheduling inbox is not implemented (module docstring)
            if _over_hourly_limit(context, account):
                log.warning("%s reached the hourly sending limit; iMIP mail for %s not sent", account.login,
                            message.source.uid)
                return queued
            entry = server_mail(context.settings, [recipient], compose(message, recipient))
            # The organizer's own envelope sender, so replies and bounces reach them and DKIM signs
            # with the organizer's domain.
            store.send_server_mail(replace(entry, sender=message.source.organizer, account_id=account.id))
            queued += 1
    return queued
