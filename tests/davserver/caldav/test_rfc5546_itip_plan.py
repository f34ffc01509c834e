"""Which iTIP messages (RFC 5546 §3.2) a change of an organizer's object calls for — the decision
behind the iMIP mails of ``test_rfc6047_imip`` — checked on the function itself."""

from __future__ import annotations

from kantoor.davserver.caldav.invitations import Scheduled, plan, read_scheduled

ME = "olivia@example.org"


def _object(attendees: str, organizer: str = ME, sequence: int = 0, summary: str = "Review") -> Scheduled:
    body = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:plan@example.org\r\n"
            f"DTSTAMP:20260101T000000Z\r\nSEQUENCE:{sequence}\r\nDTSTART:20261201T100000Z\r\nSUMMARY:{summary}\r\n"
            f"ORGANIZER:mailto:{organizer}\r\n{attendees}END:VEVENT\r\nEND:VCALENDAR\r\n").encode()
    scheduled = read_scheduled(body)
    assert scheduled is not None
    return scheduled


def _att(address: str, params: str = "") -> str:
    return f"ATTENDEE{params}:mailto:{address}\r\n"


def _sent(messages) -> list[tuple[str, tuple[str, ...]]]:  # type: ignore[no-untyped-def]
    return [(m.method, m.recipients) for m in messages]


def test_rfc5546_plain_events_and_other_organizers_schedule_nothing():
    assert read_scheduled(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n") is None
    theirs = _object(_att(ME) + _att("a@r.test"), organizer="boss@r.test")
    assert plan(None, theirs, {ME}) == []


def test_rfc5546_organizer_never_invites_itself_and_case_does_not_matter():
    new = _object(_att(ME) + _att("A@R.test"))
    assert _sent(plan(None, new, {ME})) == [("REQUEST", ("a@r.test",))]


def test_rfc6638_7_1_attendee_switched_to_client_is_not_cancelled_and_back_is_invited():
    server = _object(_att("a@r.test"))
    client = _object(_att("a@r.test", ";SCHEDULE-AGENT=CLIENT"))
    assert plan(server, client, {ME}) == []
    assert _sent(plan(client, server, {ME})) == [("REQUEST", ("a@r.test",))]


def test_rfc5546_same_sequence_but_new_time_is_an_update_for_everyone():
    old = _object(_att("a@r.test") + _att("b@r.test"))
    new = _object(_att("a@r.test") + _att("b@r.test"), summary="Moved")
    messages = plan(old, new, {ME})
    assert _sent(messages) == [("REQUEST", ("a@r.test", "b@r.test"))] and messages[0].update


def test_rfc5546_organizer_handed_over_cancels_what_was_sent():
    old = _object(_att("a@r.test"))
    new = _object(_att("a@r.test"), organizer="colleague@r.test")
    messages = plan(old, new, {ME})
    assert _sent(messages) == [("CANCEL", ("a@r.test",))] and messages[0].sequence == 1


def test_rfc5546_deleting_or_dropping_the_organizer_cancels_for_everyone():
    """``None`` is a deleted object, or one saved without ORGANIZER (the client removed every attendee)."""
    old = _object(_att("a@r.test") + _att("b@r.test"), sequence=3)
    assert _sent(plan(old, None, {ME})) == [("CANCEL", ("a@r.test", "b@r.test"))]
    assert plan(old, None, {ME})[0].sequence == 4
