"""Calendar/contact Store queries: rights read-out, addresses, all-or-nothing PROPPATCH, time-range candidates."""

from __future__ import annotations

import datetime as dt

import pytest

from kantoor.storage import AlreadyExists, NotFound, PermissionDenied


def _event(uid: str, start: str, end: str, extra: str = "") -> bytes:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
            f"DTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
            ).encode()


def test_collection_rights_and_account_addresses(core) -> None:  # type: ignore[no-untyped-def]
    ann = core.store.create_account("ann@example.org", "", "standard")
    bob = core.store.create_account("bob@example.org", "", "standard")
    cal = core.store.find_collection(ann.principal_id, "calendar", "calendar", ann.principal_id)
    assert core.store.rights_held(cal.id, actor=ann.principal_id) >= {"read", "write", "admin"}
    assert core.store.rights_held(cal.id, actor=bob.principal_id) == frozenset()
    core.store.add_alias("ann@example.org", "anna@example.org")
    assert core.store.account_addresses("ann@example.org") == ["ann@example.org", "anna@example.org"]
    assert core.store.account_addresses("nobody@example.org") == []


def test_patch_collection_is_all_or_nothing(core) -> None:  # type: ignore[no-untyped-def]
    ann = core.store.create_account("ann@example.org", "", "standard")
    bob = core.store.create_account("bob@example.org", "", "standard")
    cal = core.store.find_collection(ann.principal_id, "calendar", "calendar", ann.principal_id)
    order = '<x:calendar-order xmlns:x="http://apple.com/ns/ical/">3</x:calendar-order>'
    core.store.patch_collection(cal.id, {"display_name": "Work"}, {"{http://apple.com/ns/ical/}calendar-order": order},
                                actor=ann.principal_id)
    assert core.store.get_collection(cal.id).display_name == "Work"
    assert core.store.get_properties(cal.id, actor=ann.principal_id) == {
        "{http://apple.com/ns/ical/}calendar-order": order}
    with pytest.raises(ValueError):
        core.store.patch_collection(cal.id, {"display_name": "Home"}, {"bad": "<b/>"}, actor=ann.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.patch_collection(cal.id, {"display_name": "Bob's"}, {}, actor=bob.principal_id)
    with pytest.raises(NotFound):
        core.store.patch_collection(cal.id, {}, {"{urn:x}p": "<p/>"}, item_name="missing.ics", actor=ann.principal_id)
    assert core.store.get_collection(cal.id).display_name == "Work"
    core.store.put_item(cal.id, "a.ics", _event("a", "20261201T100000Z", "20261201T110000Z"), "text/calendar",
                        actor=ann.principal_id)
    core.store.patch_collection(cal.id, {}, {"{urn:x}p": "<p xmlns='urn:x'>1</p>"}, item_name="a.ics",
                                actor=ann.principal_id)
    assert core.store.item_properties(cal.id, ann.principal_id) == {"a.ics": {"{urn:x}p": "<p xmlns='urn:x'>1</p>"}}
    core.store.patch_collection(cal.id, {}, {"{http://apple.com/ns/ical/}calendar-order": None}, actor=ann.principal_id)
    assert core.store.get_properties(cal.id, actor=ann.principal_id) == {}


def test_calendar_candidates_use_the_index_but_keep_recurring_items(core) -> None:  # type: ignore[no-untyped-def]
    ann = core.store.create_account("ann@example.org", "", "standard")
    cal = core.store.find_collection(ann.principal_id, "calendar", "calendar", ann.principal_id)
    me = ann.principal_id
    core.store.put_item(cal.id, "dec.ics", _event("dec", "20261201T100000Z", "20261201T110000Z"), "text/calendar",
                        actor=me)
    core.store.put_item(cal.id, "jan.ics", _event("jan", "20270110T100000Z", "20270110T110000Z"), "text/calendar",
                        actor=me)
    core.store.put_item(cal.id, "weekly.ics", _event("weekly", "20200106T090000Z", "20200106T100000Z",
                                                     "RRULE:FREQ=WEEKLY\r\n"), "text/calendar", actor=me)
    utc = dt.UTC
    names = [i.name for i in core.store.calendar_candidates(
        cal.id, dt.datetime(2027, 1, 1, tzinfo=utc), dt.datetime(2027, 2, 1, tzinfo=utc), "VEVENT", me)]
    assert names == ["jan.ics", "weekly.ics"]
    assert [i.name for i in core.store.calendar_candidates(cal.id, None, None, "VTODO", me)] == []
    assert len(core.store.calendar_candidates(cal.id, None, None, None, me)) == 3


def test_contact_candidates_match_fn_and_email_in_sql(core) -> None:  # type: ignore[no-untyped-def]
    ann = core.store.create_account("ann@example.org", "", "standard")
    book = core.store.find_collection(ann.principal_id, "addressbook", "contacts", ann.principal_id)
    me = ann.principal_id
    for name, fn, email in (("ada", "Ada Lovelace", "ada@Example.org"), ("alan", "Alan Turing", "alan@bletchley.uk"),
                            ("pct", "100% Sure", "sure@example.org")):
        card = f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{name}\r\nFN:{fn}\r\nEMAIL:{email}\r\nEND:VCARD\r\n"
        core.store.put_item(book.id, f"{name}.vcf", card.encode(), "text/vcard", actor=me)

    def names(condition) -> list[str]:  # type: ignore[no-untyped-def]
        return [i.name for i in core.store.contact_candidates(book.id, condition, me)]

    assert names(("match", "FN", "contains", "LOVE")) == ["ada.vcf"]
    assert names(("match", "EMAIL", "ends-with", "example.ORG")) == ["ada.vcf", "pct.vcf"]
    assert names(("or", [("match", "FN", "contains", "turing"), ("match", "EMAIL", "starts-with", "ada@")])) == [
        "ada.vcf", "alan.vcf"]
    assert names(("and", [("match", "FN", "contains", "a"), ("match", "EMAIL", "contains", "bletchley")])) == [
        "alan.vcf"]
    assert names(("match", "FN", "contains", "0%")) == ["pct.vcf"]  # LIKE wildcards are matched literally
    assert names(("match", "FN", "equals", "alan")) == []
    assert names(("match", "FN", "contains", "nobody")) == []


def test_move_calendar_item_is_one_transaction_with_change_log_and_uid_check(core) -> None:  # type: ignore[no-untyped-def]
    ann = core.store.create_account("ann@example.org", "", "standard")
    bob = core.store.create_account("bob@example.org", "", "standard")
    me = ann.principal_id
    cal = core.store.find_collection(me, "calendar", "calendar", me)
    work = core.store.create_collection(me, "calendar", "work", actor=me, components="VEVENT")
    body = _event("m", "20261201T100000Z", "20261201T110000Z")
    item, _ = core.store.put_item(cal.id, "m.ics", body, "text/calendar", actor=me)
    core.store.set_properties(cal.id, {"{urn:x}p": "<p/>"}, "m.ics", actor=me)
    usage = core.store.usage(me)["calendar"]
    with pytest.raises(PermissionDenied):
        core.store.move_calendar_item(cal.id, "m.ics", work.id, "n.ics", actor=bob.principal_id)
    moved = core.store.move_calendar_item(cal.id, "m.ics", work.id, "n.ics", actor=me)
    assert moved.etag == item.etag and core.store.usage(me)["calendar"] == usage
    assert [i.name for i in core.store.list_items(cal.id, me)] == []
    assert core.store.get_properties(work.id, "n.ics", actor=me) == {"{urn:x}p": "<p/>"}
    assert [(c.item_name, c.kind) for c in core.store.changes_since(cal.id, 0, me)][-1] == ("m.ics", "deleted")
    assert [(c.item_name, c.kind) for c in core.store.changes_since(work.id, 0, me)] == [("n.ics", "created")]
    core.store.put_item(cal.id, "other.ics", body, "text/calendar", actor=me)  # same UID again
    with pytest.raises(AlreadyExists):
        core.store.move_calendar_item(cal.id, "other.ics", work.id, "x.ics", actor=me)
    assert [i.name for i in core.store.list_items(cal.id, me)] == ["other.ics"]
