"""Store.copy_calendar_item (WebDAV COPY, RFC 4918 §9.8): one transaction that checks rights on both
sides, UID uniqueness and the destination owner's capacity, shares the body and copies dead properties."""

from __future__ import annotations

import pytest

from kantoor.config.settings import PlanSettings
from kantoor.storage import AlreadyExists, PermissionDenied, PreconditionFailed, QuotaExceeded


def _tiny(settings) -> None:  # type: ignore[no-untyped-def]
    settings.plans["tiny"] = PlanSettings(title="Tiny", calendar_bytes=60_000, caldav=True)


def _event(uid: str, padding: int = 0) -> bytes:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
            f"DTSTAMP:20260101T000000Z\r\nDTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\n"
            f"DESCRIPTION:{'x' * padding}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()


def test_copy_is_atomic_with_quota_rights_uid_blob_and_dead_properties(open_test_core) -> None:  # type: ignore[no-untyped-def]
    core = open_test_core(_tiny)
    store = core.store
    ann = store.create_account("ann@example.org", "", "tiny")
    bob = store.create_account("bob@example.org", "", "tiny")
    me = ann.principal_id
    cal = store.find_collection(me, "calendar", "calendar", me)
    work = store.create_collection(me, "calendar", "work", actor=me, components="VEVENT")
    store.inline_limit = 16 * 1024  # the plan's 60 kB hold two copies of a body that is a blob file
    big = _event("big", padding=25_000)  # over the inline limit: a blob file
    item, _ = store.put_item(cal.id, "big.ics", big, "text/calendar", actor=me)
    assert item.blob_sha256 is not None
    store.patch_collection(cal.id, {}, {"{urn:x}p": "<p xmlns='urn:x'>1</p>"}, item_name="big.ics", actor=me)
    before = store.get_collection(work.id).modseq

    copy, created = store.copy_calendar_item(cal.id, "big.ics", work.id, "big.ics", actor=me)
    assert created and copy.etag == item.etag and copy.dtstart == item.dtstart
    assert store.read_body(store.get_item(work.id, "big.ics", me)) == big
    assert store.item_properties(work.id, me) == {"big.ics": {"{urn:x}p": "<p xmlns='urn:x'>1</p>"}}
    assert store.get_collection(work.id).modseq == before + 1
    # a third copy goes over the 60 kB capacity: refused, nothing stored
    work2 = store.create_collection(me, "calendar", "work2", actor=me, components="VEVENT")
    with pytest.raises(QuotaExceeded):
        store.copy_calendar_item(cal.id, "big.ics", work2.id, "big.ics", actor=me)
    assert store.list_items(work2.id, me) == []
    with pytest.raises(PreconditionFailed):
        store.copy_calendar_item(cal.id, "big.ics", work.id, "big.ics", overwrite=False, actor=me)
    # replacing frees what the replaced copy used, so it fits
    _copy, created = store.copy_calendar_item(cal.id, "big.ics", work.id, "big.ics", actor=me)
    assert not created
    with pytest.raises(AlreadyExists):
        store.copy_calendar_item(cal.id, "big.ics", cal.id, "again.ics", actor=me)
    with pytest.raises(PermissionDenied):
        store.copy_calendar_item(cal.id, "big.ics", work.id, "b.ics", actor=bob.principal_id)
    # deleting the original keeps the copy's body (the blob is shared, counted twice)
    store.delete_item(cal.id, "big.ics", me)
    store.collect_garbage(grace_seconds=0)
    assert store.read_body(store.get_item(work.id, "big.ics", me)) == big
