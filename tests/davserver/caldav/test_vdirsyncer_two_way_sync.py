"""Acceptance: a two-way vdirsyncer sync of a calendar (time zones, recurrence with an exception,
an alarm), a task list and an address book (vCard 3.0 and 4.0, a photo, a group) round-trips
every property, carries edits and deletes made on either side, and a second sync moves nothing
(RFC 4791, RFC 6352, RFC 6578 as a real client uses them)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from harness import require_tool

TZ = ("BEGIN:VTIMEZONE\r\nTZID:Europe/Amsterdam\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
      "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZNAME:CET\r\n"
      "END:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
      "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZNAME:CEST\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n")


def _calendar(body: str) -> str:
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Kantoor tests//EN\r\n{body}END:VCALENDAR\r\n"


SERVER_EVENT = _calendar(
    TZ + "BEGIN:VEVENT\r\nUID:standup@example.org\r\nDTSTAMP:20260101T000000Z\r\n"
    "DTSTART;TZID=Europe/Amsterdam:20261201T093000\r\nDTEND;TZID=Europe/Amsterdam:20261201T094500\r\n"
    "RRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR\r\nEXDATE;TZID=Europe/Amsterdam:20261225T093000\r\n"
    "SUMMARY:Stand-up\r\nDESCRIPTION:Daily\\, short\\; please be on time\r\nLOCATION:Room 1\r\n"
    "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Stand-up\r\nTRIGGER:-PT5M\r\nEND:VALARM\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:standup@example.org\r\nDTSTAMP:20260101T000000Z\r\n"
    "RECURRENCE-ID;TZID=Europe/Amsterdam:20261203T093000\r\n"
    "DTSTART;TZID=Europe/Amsterdam:20261203T110000\r\nDTEND;TZID=Europe/Amsterdam:20261203T111500\r\n"
    "SUMMARY:Stand-up (moved)\r\nEND:VEVENT\r\n")
SERVER_EVENT_2 = _calendar("BEGIN:VEVENT\r\nUID:review@example.org\r\nDTSTAMP:20260101T000000Z\r\n"
                           "DTSTART;VALUE=DATE:20261210\r\nDTEND;VALUE=DATE:20261211\r\nSUMMARY:Review day\r\n"
                           "END:VEVENT\r\n")
LOCAL_EVENT = _calendar(TZ + "BEGIN:VEVENT\r\nUID:dentist@example.org\r\nDTSTAMP:20260101T000000Z\r\n"
                        "DTSTART;TZID=Europe/Amsterdam:20261215T160000\r\n"
                        "DTEND;TZID=Europe/Amsterdam:20261215T163000\r\nSUMMARY:Dentist\r\n"
                        "BEGIN:VALARM\r\nACTION:AUDIO\r\nTRIGGER;RELATED=START:-PT1H\r\nEND:VALARM\r\nEND:VEVENT\r\n")
SERVER_TASK = _calendar("BEGIN:VTODO\r\nUID:taxes@example.org\r\nDTSTAMP:20260101T000000Z\r\nDUE:20270401T170000Z\r\n"
                        "SUMMARY:File taxes\r\nPRIORITY:1\r\nSTATUS:NEEDS-ACTION\r\n"
                        "RRULE:FREQ=YEARLY\r\nEND:VTODO\r\n")
LOCAL_TASK = _calendar("BEGIN:VTODO\r\nUID:milk@example.org\r\nDTSTAMP:20260101T000000Z\r\nSUMMARY:Buy milk\r\n"
                       "STATUS:COMPLETED\r\nCOMPLETED:20260102T100000Z\r\nPERCENT-COMPLETE:100\r\nEND:VTODO\r\n")
PHOTO = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
SERVER_CARD_3 = ("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ada@example.org\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\n"
                 "EMAIL;TYPE=INTERNET,WORK:ada@example.org\r\nTEL;TYPE=CELL:+31 6 1234 5678\r\n"
                 "ORG:Analytical Engines Ltd\r\nNICKNAME:Countess\r\n"
                 f"PHOTO;ENCODING=b;TYPE=PNG:{PHOTO}\r\nEND:VCARD\r\n")
SERVER_CARD_4 = ("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:5c4e2b1a-0000-4000-8000-000000000001\r\n"
                 "FN:Grace Hopper\r\nN:Hopper;Grace;;;\r\nEMAIL;TYPE=work:grace@example.org\r\n"
                 f"PHOTO:data:image/png;base64,{PHOTO}\r\nEND:VCARD\r\n")
LOCAL_GROUP = ("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:5c4e2b1a-0000-4000-8000-0000000000ff\r\nKIND:group\r\n"
               "FN:Pioneers\r\nMEMBER:urn:uuid:5c4e2b1a-0000-4000-8000-000000000001\r\nEND:VCARD\r\n")
LOCAL_CARD_3 = ("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:alan@example.org\r\nFN:Alan Turing\r\nN:Turing;Alan;;;\r\n"
                "CATEGORIES:Friends\r\nEND:VCARD\r\n")


def _lines(text: str) -> list[str]:
    """Unfolded content lines, without PRODID (a client may rewrite it)."""
    unfolded = re.sub(r"\r?\n[ \t]", "", text)
    return sorted(line for line in unfolded.splitlines() if line and not line.startswith("PRODID"))


@pytest.fixture(scope="module")
def synced(dav, tmp_path_factory):  # type: ignore[no-untyped-def]
    vdirsyncer = require_tool("vdirsyncer")
    owner = dav.new_user()
    root = tmp_path_factory.mktemp("vdirsyncer")
    pairs = {"events": ("calendar", ".ics", "caldav"), "todo": ("tasks", ".ics", "caldav"),
             "cards": ("contacts", ".vcf", "carddav")}
    config = [f'[general]\nstatus_path = "{root / "status"}/"\n']
    for pair, (collection, ext, kind) in pairs.items():
        (root / pair).mkdir()
        config.append(f"""
[pair {pair}]
a = "{pair}_local"
b = "{pair}_remote"
collections = null
conflict_resolution = "a wins"

[storage {pair}_local]
type = "filesystem"
path = "{root / pair}/"
fileext = "{ext}"

[storage {pair}_remote]
type = "{kind}"
url = "{dav.base_url}{owner[0]}/{collection}/"
username = "{owner[0]}"
password = "{owner[1]}"
""")
    (root / "config").write_text("".join(config))

    def run(*args: str) -> str:
        result = subprocess.run([vdirsyncer, "-c", str(root / "config"), *args], capture_output=True, text=True,
                                timeout=120, input="y\n" * 10)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    return owner, root, run


def _put(dav, owner, path: str, body: str, ctype: str) -> None:  # type: ignore[no-untyped-def]
    reply = dav.request("PUT", f"/dav/{owner[0]}/{path}", owner, body.encode(), {"Content-Type": ctype})
    assert reply.status in (201, 204), (path, reply.status, reply.text)


def _server_items(dav, owner, collection: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """UID-less view: the text of every item of a collection, by name."""
    import xml.etree.ElementTree as ET

    reply = dav.request("PROPFIND", f"/dav/{owner[0]}/{collection}/", owner,
                        b'<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>', {"Depth": "1"})
    names = [(h.text or "").rsplit("/", 1)[-1] for h in ET.fromstring(reply.body).iter("{DAV:}href")]
    return {n: dav.request("GET", f"/dav/{owner[0]}/{collection}/{n}", owner).text for n in names if n}


def _local_items(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir() if p.is_file()}


def _by_uid(items: dict[str, str]) -> dict[str, list[str]]:
    out = {}
    for text in items.values():
        match = re.search(r"^UID:(.*?)\r?$", text, re.M)
        assert match is not None
        out[match.group(1)] = _lines(text)
    return out


def test_two_way_sync_round_trips_edits_deletes_and_then_moves_nothing(dav, synced):
    owner, root, run = synced
    _put(dav, owner, "calendar/standup.ics", SERVER_EVENT, "text/calendar")
    _put(dav, owner, "calendar/review.ics", SERVER_EVENT_2, "text/calendar")
    _put(dav, owner, "tasks/taxes.ics", SERVER_TASK, "text/calendar")
    _put(dav, owner, "contacts/ada.vcf", SERVER_CARD_3, "text/vcard")
    _put(dav, owner, "contacts/grace.vcf", SERVER_CARD_4, "text/vcard")
    (root / "events" / "dentist.ics").write_text(LOCAL_EVENT, newline="")
    (root / "todo" / "milk.ics").write_text(LOCAL_TASK, newline="")
    (root / "cards" / "pioneers.vcf").write_text(LOCAL_GROUP, newline="")
    (root / "cards" / "alan.vcf").write_text(LOCAL_CARD_3, newline="")

    run("discover")
    run("sync")
    expected = {
        ("calendar", "events"): {"standup@example.org": SERVER_EVENT, "review@example.org": SERVER_EVENT_2,
                                 "dentist@example.org": LOCAL_EVENT},
        ("tasks", "todo"): {"taxes@example.org": SERVER_TASK, "milk@example.org": LOCAL_TASK},
        ("contacts", "cards"): {"ada@example.org": SERVER_CARD_3,
                                "urn:uuid:5c4e2b1a-0000-4000-8000-000000000001": SERVER_CARD_4,
                                "urn:uuid:5c4e2b1a-0000-4000-8000-0000000000ff": LOCAL_GROUP,
                                "alan@example.org": LOCAL_CARD_3},
    }
    for (collection, folder), items in expected.items():
        want = {uid: _lines(text) for uid, text in items.items()}
        assert _by_uid(_server_items(dav, owner, collection)) == want, collection
        assert _by_uid(_local_items(root / folder)) == want, folder

    # Edits and deletes on both sides.
    moved = SERVER_EVENT.replace("SUMMARY:Stand-up (moved)", "SUMMARY:Stand-up (moved again)")
    _put(dav, owner, "calendar/standup.ics", moved, "text/calendar")
    assert dav.request("DELETE", f"/dav/{owner[0]}/calendar/review.ics", owner).status in (200, 204)
    assert dav.request("DELETE", f"/dav/{owner[0]}/contacts/ada.vcf", owner).status in (200, 204)
    local_cards = {re.search(r"^FN:(.*?)\r?$", t, re.M).group(1): n  # type: ignore[union-attr]
                   for n, t in _local_items(root / "cards").items()}
    (root / "cards" / local_cards["Grace Hopper"]).write_text(
        SERVER_CARD_4.replace("FN:Grace Hopper", "FN:Rear Admiral Grace Hopper"), newline="")
    (root / "cards" / local_cards["Alan Turing"]).unlink()
    local_tasks = {n for n, t in _local_items(root / "todo").items() if "Buy milk" in t}
    (root / "todo" / local_tasks.pop()).write_text(LOCAL_TASK.replace("Buy milk", "Buy oat milk"), newline="")
    run("sync")
    cards = _by_uid(_server_items(dav, owner, "contacts"))
    assert set(cards) == {"urn:uuid:5c4e2b1a-0000-4000-8000-000000000001",
                          "urn:uuid:5c4e2b1a-0000-4000-8000-0000000000ff"}
    assert "FN:Rear Admiral Grace Hopper" in cards["urn:uuid:5c4e2b1a-0000-4000-8000-000000000001"]
    assert set(_by_uid(_local_items(root / "cards"))) == set(cards)
    events = _by_uid(_local_items(root / "events"))
    assert set(events) == {"standup@example.org", "dentist@example.org"}
    assert events["standup@example.org"] == _lines(moved)
    assert "SUMMARY:Buy oat milk" in _by_uid(_server_items(dav, owner, "tasks"))["milk@example.org"]

    # A second sync finds nothing to do on either side.
    before = {c: _server_items(dav, owner, c) for c in ("calendar", "tasks", "contacts")}
    folders = ("events", "todo", "cards")
    local_before = {f: {p.name: p.stat().st_mtime_ns for p in (root / f).iterdir()} for f in folders}
    output = run("sync")
    assert not re.search(r"Copying|Updating|Deleting", output), output
    assert {c: _server_items(dav, owner, c) for c in ("calendar", "tasks", "contacts")} == before
    assert {f: {p.name: p.stat().st_mtime_ns for p in (root / f).iterdir()} for f in folders} == local_before
