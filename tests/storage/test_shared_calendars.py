"""Store side of group sharing for CalDAV/CardDAV: which calendars and address books of others an
account may read right now, each group's members book, and free/busy candidates that need only the
``freebusy`` right (PRODUCT.md "Groups and sharing")."""

from __future__ import annotations

import datetime as dt

from kantoor.storage.shared_calendars import member_vcard


def _event(uid: str, start: str, end: str, extra: str = "") -> bytes:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
            f"DTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
            ).encode()


def test_shared_collections_follow_grants_and_memberships(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    ann = store.create_account("ann@example.org", "", "standard")
    bob = store.create_account("bob@example.org", "", "standard")
    store.update_account("ann@example.org", first_name="Ann", last_name="A")
    cal = store.find_collection(ann.principal_id, "calendar", "calendar", ann.principal_id)
    assert store.shared_collections(bob.principal_id) == []
    group = store.create_group("Office", "ann@example.org")
    # the administrator sees the group's calendar and contacts (not her own collections)
    assert {c.collection.path for c in store.shared_collections(ann.principal_id)} == {"calendar", "contacts"}
    store.add_member("Office", "bob@example.org")
    shared = store.shared_collections(bob.principal_id)
    assert {(c.collection.owner_id, c.collection.path) for c in shared} == {
        (group.principal_id, "calendar"), (group.principal_id, "contacts")}
    assert all(c.group_owned and c.owner_label == "Office" for c in shared)
    assert all(c.rights == frozenset({"freebusy", "read"}) for c in shared)  # members read the group's tools
    admin_view = store.shared_collections(ann.principal_id)
    assert all(c.rights == frozenset({"freebusy", "read", "write", "bind", "admin"}) for c in admin_view)
    store.grant(cal.id, None, group.principal_id, "read", actor=ann.principal_id)
    labels = {c.owner_label for c in store.shared_collections(bob.principal_id) if c.collection.id == cal.id}
    assert labels == {"Ann A"}
    store.grant(cal.id, None, bob.principal_id, "write", actor=ann.principal_id)
    shared_cal = store.shared_collection(bob.principal_id, cal.id)
    assert shared_cal is not None and shared_cal.rights == frozenset({"freebusy", "read", "write", "bind"})
    store.revoke(cal.id, None, bob.principal_id, actor=ann.principal_id)
    assert store.shared_collection(bob.principal_id, cal.id) is not None
    store.remove_member("Office", "bob@example.org")
    assert store.shared_collections(bob.principal_id) == []
    assert store.shared_collection(bob.principal_id, cal.id) is None


def test_members_book_mirrors_members_and_profiles(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    ann = store.create_account("ann@example.org", "", "standard")
    bob = store.create_account("bob@example.org", "", "standard")
    store.update_account("ann@example.org", first_name="Ann", last_name="Smith; Jr", organisation="ACME, Inc")
    group = store.create_group("Office", "ann@example.org")
    store.add_member("Office", "bob@example.org")
    book = store.refresh_members_book(group.id)
    items = {i.name: i for i in store.list_items(book.id, bob.principal_id)}
    assert set(items) == {f"{ann.id}.vcf", f"{bob.id}.vcf"}
    card = store.read_body(items[f"{ann.id}.vcf"]).decode()
    assert "N:Smith\\; Jr;Ann;;;" in card and "ORG:ACME\\, Inc" in card
    assert "EMAIL;TYPE=INTERNET:ann@example.org" in card
    modseq = store.get_collection(book.id).modseq
    assert store.refresh_members_book(group.id).modseq == modseq  # nothing changed: no write
    store.update_account("bob@example.org", photo=b"\x89PNG\r\n\x1a\n" + b"\0" * 30_000)
    store.remove_member("Office", "bob@example.org")
    carol = store.create_account("carol@example.org", "", "standard")
    store.add_member("Office", "carol@example.org")
    store.refresh_members_book(group.id)
    changes = {c.item_name: c.kind for c in store.changes_since(book.id, modseq, ann.principal_id)}
    assert changes == {f"{bob.id}.vcf": "deleted", f"{carol.id}.vcf": "created"}
    assert store.get_collection(book.id).special_use == "members"
    assert "PHOTO;ENCODING=b;TYPE=PNG:" in member_vcard(store.get_account("bob@example.org")).decode()


def test_busy_candidates_need_only_the_freebusy_right(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    ann = store.create_account("ann@example.org", "", "standard")
    bob = store.create_account("bob@example.org", "", "standard")
    carol = store.create_account("carol@example.org", "", "standard")
    cal = store.find_collection(bob.principal_id, "calendar", "calendar", bob.principal_id)
    store.put_item(cal.id, "in.ics", _event("in", "20261201T100000Z", "20261201T110000Z"), "text/calendar",
                   actor=bob.principal_id)
    store.put_item(cal.id, "out.ics", _event("out", "20270101T100000Z", "20270101T110000Z"), "text/calendar",
                   actor=bob.principal_id)
    store.put_item(cal.id, "rec.ics", _event("rec", "20200101T100000Z", "20200101T110000Z", "RRULE:FREQ=YEARLY\r\n"),
                   "text/calendar", actor=bob.principal_id)
    start, end = dt.datetime(2026, 11, 30, tzinfo=dt.UTC), dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    assert store.busy_candidates(bob.principal_id, start, end, ann.principal_id) is None  # no common group
    store.create_group("Office", "ann@example.org")
    store.add_member("Office", "bob@example.org")
    rows = store.busy_candidates(bob.principal_id, start, end, ann.principal_id)
    assert rows is not None and sorted(r.name for r, _ in rows) == ["in.ics", "rec.ics"]
    assert store.busy_candidates(bob.principal_id, start, end, carol.principal_id) is None
