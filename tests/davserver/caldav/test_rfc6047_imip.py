"""iMIP (RFC 6047) invitations for events an account organizes, iTIP methods REQUEST and CANCEL
(RFC 5546 §3.2.2, §3.2.5), through the server's outbound queue to a fake MX; SCHEDULE-AGENT=CLIENT
(RFC 6638 §7.1) leaves scheduling to the client. Events are written with the caldav library."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote

import icalendar
import pytest
from aiosmtpd.controller import Controller
from harness import http_request, launch_server

REMOTE = "remote.test"
HOURLY_LIMIT = 6  # above what any one organizer below sends, but the last test


@dataclass
class Inbox:
    """A remote domain's MX: every message it accepted, by recipient."""

    port: int
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Accepted"

    def mails(self, address: str) -> list[tuple[str, EmailMessage]]:
        with self.lock:
            return [(sender, message_from_bytes(content, policy=policy.default))  # type: ignore[misc]
                    for sender, rcpts, content in self.received if address in rcpts]

    def wait(self, address: str, count: int, timeout: float = 20) -> list[tuple[str, EmailMessage]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.mails(address)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{address}: {len(self.mails(address))} mail(s), expected {count}")


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = Inbox(port)
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    yield handler
    controller.stop()


@pytest.fixture(scope="module")
def organizer_server(inbox: Inbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Kantoor whose mail for remote.test goes to ``inbox``."""
    proc = launch_server(tmp_path_factory.mktemp("imip") / "data",
                         KANTOOR_DELIVERY_STATIC_MX=f"{REMOTE}=127.0.0.1:{inbox.port}",
                         KANTOOR_DELIVERY_POLL_SECONDS="0.2",
                         KANTOOR_DELIVERY_MAX_MESSAGES_PER_HOUR=str(HOURLY_LIMIT))
    try:
        yield proc
    finally:
        proc.stop()


def _remote() -> str:
    return f"guest-{secrets.token_hex(3)}@{REMOTE}"


def _event(uid: str, organizer: str, attendees: list[str], summary: str = "Design review", sequence: int = 0,
           stamp: str = "20260101T000000Z", organizer_params: str = "", status: str = "") -> str:
    lines = [f"ATTENDEE;CN=Guest;PARTSTAT=NEEDS-ACTION;RSVP=TRUE{a if a.startswith(';') else ':mailto:' + a}"
             if not a.startswith("!") else f"ATTENDEE;SCHEDULE-AGENT=CLIENT:mailto:{a[1:]}" for a in attendees]
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Kantoor tests//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:{stamp}\r\nSEQUENCE:{sequence}\r\nDTSTART:20261201T100000Z\r\n"
            f"DTEND:20261201T110000Z\r\nSUMMARY:{summary}\r\n{f'STATUS:{status}' + chr(13) + chr(10) if status else ''}"
            f"ORGANIZER;CN=Olivia Organizer{organizer_params}:mailto:{organizer}\r\n"
            + "".join(f"{line}\r\n" for line in lines)
            + "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Soon\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n")


def _calendar(server: Any, user: tuple[str, str]):  # type: ignore[no-untyped-def]
    import caldav

    client = caldav.DAVClient(url=f"http://{server.host}:{server.ports['http']}/dav/", username=user[0],
                              password=user[1], timeout=60)
    return client.principal().calendar(cal_id="calendar")


def _itip(mail: EmailMessage) -> tuple[icalendar.Calendar, str]:
    part = next(p for p in mail.walk() if p.get_content_type() == "text/calendar")
    return icalendar.Calendar.from_ical(part.get_content()), str(part.get_param("method"))


def _queued(server: Any) -> int:
    return len(server.core().store.list_outbound(state=None))


@pytest.fixture
def organizer(organizer_server: Any) -> tuple[str, str]:
    return organizer_server.make_user(f"olivia-{secrets.token_hex(3)}@example.org")


def test_rfc6047_request_to_external_attendees_only(organizer_server, inbox, organizer):
    local = organizer_server.make_user(f"lars-{secrets.token_hex(3)}@example.org")
    guest, client_handled = _remote(), _remote()
    calendar = _calendar(organizer_server, organizer)
    before = _queued(organizer_server)
    calendar.save_event(_event("imip-1@example.org", organizer[0], [guest, local[0], "!" + client_handled]),
                        increase_seqno=False)
    sender, mail = inbox.wait(guest, 1)[0]
    # RFC 6047 §2.4: text/calendar with method=REQUEST, From the organizer (envelope too).
    assert sender == organizer[0] and organizer[0] in mail["From"] and mail["To"] == guest
    assert mail["Subject"] == "Invitation: Design review"
    assert any(p.get_content_type() == "text/plain" for p in mail.walk())
    itip, method = _itip(mail)
    assert method == "REQUEST" and itip["METHOD"] == "REQUEST"
    event = next(iter(itip.walk("VEVENT")))
    assert str(event["UID"]) == "imip-1@example.org" and str(event["SUMMARY"]) == "Design review"
    assert not list(event.walk("VALARM"))  # the organizer's alarm stays private
    attendees = {str(a).lower(): a for a in event.get("ATTENDEE")}
    assert f"mailto:{guest}" in attendees
    # RFC 6638 §3.2: SCHEDULE-* parameters are not sent; the local account and the
    # client-scheduled attendee get no mail (one queued message in all).
    assert all("SCHEDULE-AGENT" not in a.params for a in attendees.values())
    assert _queued(organizer_server) == before + 1
    assert inbox.mails(client_handled) == []


def test_rfc5546_unchanged_resave_sends_nothing_changes_send_updates(organizer_server, inbox, organizer):
    guest, second = _remote(), _remote()
    calendar = _calendar(organizer_server, organizer)
    saved = calendar.save_event(_event("imip-2@example.org", organizer[0], [guest]), increase_seqno=False)
    inbox.wait(guest, 1)
    queued = _queued(organizer_server)
    # A client syncing the same event back (new DTSTAMP only) sends nothing.
    saved.data = _event("imip-2@example.org", organizer[0], [guest], stamp="20260102T000000Z")
    saved.save(increase_seqno=False)
    assert _queued(organizer_server) == queued
    # An added attendee is invited; the one already invited hears nothing of it.
    saved.data = _event("imip-2@example.org", organizer[0], [guest, second])
    saved.save(increase_seqno=False)
    assert _itip(inbox.wait(second, 1)[0][1])[1] == "REQUEST"
    assert _queued(organizer_server) == queued + 1
    # A new time/summary with a higher SEQUENCE goes to everyone as an update.
    saved.data = _event("imip-2@example.org", organizer[0], [guest, second], summary="Moved review", sequence=1)
    saved.save(increase_seqno=False)
    update = inbox.wait(guest, 2)[1][1]
    assert update["Subject"] == "Updated invitation: Moved review"
    itip, _ = _itip(update)
    assert int(next(iter(itip.walk("VEVENT")))["SEQUENCE"]) == 1
    assert len(inbox.wait(second, 2)) == 2


def test_rfc5546_3_2_5_cancel_to_a_removed_attendee_and_on_delete(organizer_server, inbox, organizer):
    stays, leaves = _remote(), _remote()
    calendar = _calendar(organizer_server, organizer)
    saved = calendar.save_event(_event("imip-3@example.org", organizer[0], [stays, leaves]), increase_seqno=False)
    inbox.wait(leaves, 1)
    inbox.wait(stays, 1)
    saved.data = _event("imip-3@example.org", organizer[0], [stays], sequence=1)
    saved.save(increase_seqno=False)
    cancel = inbox.wait(leaves, 2)[1][1]
    itip, method = _itip(cancel)
    event = next(iter(itip.walk("VEVENT")))
    assert method == "CANCEL" and itip["METHOD"] == "CANCEL" and str(event["STATUS"]) == "CANCELLED"
    assert str(event["ATTENDEE"]).lower() == f"mailto:{leaves}" and int(event["SEQUENCE"]) >= 1
    saved.delete()
    assert _itip(inbox.wait(stays, 2)[1][1])[1] == "REQUEST"  # the SEQUENCE went up: an update
    final = inbox.wait(stays, 3)[2][1]
    itip, method = _itip(final)
    assert method == "CANCEL" and final["Subject"] == "Cancelled: Design review"
    assert int(next(iter(itip.walk("VEVENT")))["SEQUENCE"]) == 2


def test_rfc6638_7_1_schedule_agent_client_on_the_organizer_sends_nothing(organizer_server, inbox, organizer):
    guest = _remote()
    calendar = _calendar(organizer_server, organizer)
    queued = _queued(organizer_server)
    saved = calendar.save_event(_event("imip-4@example.org", organizer[0], [guest],
                                       organizer_params=";SCHEDULE-AGENT=CLIENT"), increase_seqno=False)
    saved.delete()
    assert _queued(organizer_server) == queued


def test_rfc6047_someone_elses_event_sends_nothing(organizer_server, inbox, organizer):
    """An event organized by another address (an invitation the account keeps) is not the server's
    to schedule."""
    calendar = _calendar(organizer_server, organizer)
    queued = _queued(organizer_server)
    calendar.save_event(_event("imip-5@example.org", f"boss@{REMOTE}", [organizer[0], _remote()]),
                        increase_seqno=False)
    assert _queued(organizer_server) == queued


def test_invitations_count_against_the_hourly_sending_limit(organizer_server, inbox, organizer):
    guests = [_remote() for _ in range(HOURLY_LIMIT + 2)]
    calendar = _calendar(organizer_server, organizer)
    queued = _queued(organizer_server)
    calendar.save_event(_event("imip-6@example.org", organizer[0], guests), increase_seqno=False)
    assert _queued(organizer_server) == queued + HOURLY_LIMIT


def test_rfc5546_3_2_5_status_cancelled_cancels_and_a_refused_write_sends_nothing(organizer_server, inbox, organizer):
    guest = _remote()
    calendar = _calendar(organizer_server, organizer)
    saved = calendar.save_event(_event("imip-7@example.org", organizer[0], [guest]), increase_seqno=False)
    inbox.wait(guest, 1)
    queued = _queued(organizer_server)
    # A DELETE with a stale If-Match is refused (412): nothing is deleted, nothing is sent.
    path = f"/dav/{organizer[0]}/calendar/{unquote(str(saved.url).rsplit('/', 1)[-1])}"
    reply = http_request(organizer_server.host, organizer_server.ports["http"], "DELETE", path, organizer,
                         headers={"If-Match": '"stale"'})
    assert reply.status == 412 and _queued(organizer_server) == queued
    saved.data = _event("imip-7@example.org", organizer[0], [guest], sequence=1, status="CANCELLED")
    saved.save(increase_seqno=False)
    itip, method = _itip(inbox.wait(guest, 2)[1][1])
    assert method == "CANCEL" and str(next(iter(itip.walk("VEVENT")))["STATUS"]) == "CANCELLED"
    saved.delete()  # already cancelled: nothing more to say
    assert _queued(organizer_server) == queued + 1


def test_imip_invitations_can_be_turned_off_for_self_scheduling_clients(inbox, tmp_path):
    """With ``delivery.imip_invitations = false`` the server sends nothing (the client schedules, as
    Thunderbird does when calendar-auto-schedule is not advertised), so attendees get one copy."""
    proc = launch_server(tmp_path / "data", KANTOOR_DELIVERY_STATIC_MX=f"{REMOTE}=127.0.0.1:{inbox.port}",
                         KANTOOR_DELIVERY_IMIP_INVITATIONS="false")
    try:
        user = proc.make_user(f"olivia-{secrets.token_hex(3)}@example.org")
        guest = _remote()
        _calendar(proc, user).save_event(_event("imip-off@example.org", user[0], [guest]), increase_seqno=False)
        assert _queued(proc) == 0
        assert "calendar-auto-schedule" not in http_request(
            proc.host, proc.ports["http"], "OPTIONS", "/dav/", auth=user).headers.get("DAV", "")
    finally:
        proc.stop()
