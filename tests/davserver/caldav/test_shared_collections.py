"""Sharing inside groups over CalDAV/CardDAV (PRODUCT.md "Groups and sharing"): what an owner shares
appears in each sharee's calendar-home / addressbook-home (RFC 4791 §6.2.1, RFC 6352 §7.1.1) with a
truthful DAV:current-user-privilege-set (RFC 3744 §5.4), and disappears at once when revoked or when
the member leaves the group; each group's calendar, contacts and read-only members book are reachable
from every member's home."""

from __future__ import annotations

import datetime as dt
import secrets
import xml.etree.ElementTree as ET

import caldav
import pytest

CT = {"Content-Type": "text/calendar"}
HOME_PROPFIND = (b'<D:propfind xmlns:D="DAV:"><D:prop><D:displayname/><D:resourcetype/>'
                 b"<D:current-user-privilege-set/></D:prop></D:propfind>")
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


def _home(dav, auth) -> dict[str, tuple[str, set[str]]]:  # type: ignore[no-untyped-def]
    """Collection name → (display name, privileges) of everything in the account's home."""
    reply = dav.request("PROPFIND", f"/dav/{auth[0]}/", auth, HOME_PROPFIND, {"Depth": "1"})
    assert reply.status == 207, reply.text
    found = {}
    for response in ET.fromstring(reply.body).iter("{DAV:}response"):
        href = response.findtext("{DAV:}href") or ""
        parts = [p for p in href.split("/") if p]
        if len(parts) != 3:
            continue
        name = response.findtext(".//{DAV:}displayname") or ""
        privileges = {p.tag.split("}")[1] for p in response.iterfind(".//{DAV:}privilege/*")}
        found[parts[2]] = (name, privileges)
    return found


def _bound(dav, auth, title_part: str) -> tuple[str, set[str]] | None:  # type: ignore[no-untyped-def]
    for name, (title, privileges) in _home(dav, auth).items():
        if title_part in title:
            return name, privileges
    return None


def _group(server, admin: str, *members: tuple[str, bool]) -> str:  # type: ignore[no-untyped-def]
    store = server.core().store
    name = f"Team {secrets.token_hex(3)}"
    store.create_group(name, admin)
    for login, can_write in members:
        store.add_member(name, login, can_write=can_write)
    return name


def test_shared_calendar_appears_in_the_sharee_home_with_true_privileges(dav, server, make_event):
    ann, bob = dav.new_user(), dav.new_user()
    store = server.core().store
    ann_account, bob_account = store.get_account(ann[0]), store.get_account(bob[0])
    store.update_account(ann[0], first_name="Ann", last_name="Owner")
    group = _group(server, ann[0], (bob[0], False))
    group_principal = store.get_group(group).principal_id
    calendar = store.find_collection(ann_account.principal_id, "calendar", "calendar", ann_account.principal_id)
    assert dav.request("PUT", f"/dav/{ann[0]}/calendar/a.ics", ann, make_event("shared-a@example.org"),
                       CT).status == 201
    assert _bound(dav, bob, "Ann Owner") is None  # private by default

    store.grant(calendar.id, None, group_principal, "read", actor=ann_account.principal_id)
    bound = _bound(dav, bob, "Ann Owner: Calendar")
    assert bound is not None
    name, privileges = bound
    assert "read" in privileges and "write" not in privileges and "write-content" not in privileges
    path = f"/dav/{bob[0]}/{name}/"
    assert "shared-a@example.org" in dav.request("GET", path + "a.ics", bob).text
    assert dav.request("PUT", path + "b.ics", bob, make_event("shared-b@example.org"), CT).status == 403
    assert dav.request("DELETE", path + "a.ics", bob).status == 403

    store.grant(calendar.id, None, group_principal, "write", actor=ann_account.principal_id)
    assert {"write", "write-content"} <= _bound(dav, bob, "Ann Owner: Calendar")[1]  # type: ignore[index]
    assert dav.request("PUT", path + "b.ics", bob, make_event("shared-b@example.org"), CT).status == 201
    assert dav.request("GET", f"/dav/{ann[0]}/calendar/b.ics", ann).status == 200

    # Leaving the group: gone at once, from the home and by URL.
    store.remove_member(group, bob[0])
    assert _bound(dav, bob, "Ann Owner") is None
    assert dav.request("GET", path + "a.ics", bob).status in (403, 404)

    # A grant to the account itself, then revoked.
    store.grant(calendar.id, None, bob_account.principal_id, "read", actor=ann_account.principal_id)
    assert _bound(dav, bob, "Ann Owner: Calendar") is not None
    store.revoke(calendar.id, None, bob_account.principal_id, actor=ann_account.principal_id)
    assert _bound(dav, bob, "Ann Owner") is None
    assert dav.request("GET", path + "a.ics", bob).status in (403, 404)


def test_group_calendar_and_contacts_in_every_member_home(dav, server, make_event, make_vcard):
    admin, reader, writer = dav.new_user(), dav.new_user(), dav.new_user()
    group = _group(server, admin[0], (reader[0], False), (writer[0], True))
    homes = {who: _home(dav, who) for who in (admin, reader, writer)}
    for home in homes.values():
        titles = {title for title, _ in home.values()}
        assert {f"{group}: Calendar", f"{group}: Contacts", f"{group}: Members"} <= titles

    def bound(auth, title: str) -> str:  # type: ignore[no-untyped-def]
        found = _bound(dav, auth, f"{group}: {title}")
        assert found is not None
        return f"/dav/{auth[0]}/{found[0]}/"

    # What DAVx5 / Apple ask of a home (RFC 6578 §4, CalendarServer getctag): every binding answers.
    props = (b'<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" '
             b'xmlns:CS="http://calendarserver.org/ns/"><D:prop><D:sync-token/><CS:getctag/>'
             b"<C:supported-calendar-component-set/><D:supported-report-set/><D:owner/></D:prop></D:propfind>")
    listing = dav.request("PROPFIND", f"/dav/{reader[0]}/", reader, props, {"Depth": "1"})
    assert listing.status == 207
    root = ET.fromstring(listing.body)
    tokens = [e.text for e in root.iter("{DAV:}sync-token") if e.text]
    assert len(tokens) == len(homes[reader]) == len(set(tokens))
    assert len([e for e in root.iter("{http://calendarserver.org/ns/}getctag") if e.text]) == len(homes[reader])
    event = make_event(f"group-{secrets.token_hex(3)}@example.org")
    assert dav.request("PUT", bound(admin, "Calendar") + "g.ics", admin, event, CT).status == 201
    assert dav.request("GET", bound(reader, "Calendar") + "g.ics", reader).status == 200
    assert dav.request("PUT", bound(reader, "Calendar") + "r.ics", reader, event, CT).status == 403
    card = make_vcard(f"group-card-{secrets.token_hex(3)}", name="Group Contact", email="gc@example.org")
    assert dav.request("PUT", bound(writer, "Contacts") + "c.vcf", writer, card,
                       {"Content-Type": "text/vcard"}).status == 201
    assert "FN:Group Contact" in dav.request("GET", bound(reader, "Contacts") + "c.vcf", reader).text


def test_members_book_shows_each_member_and_is_read_only(dav, server, make_vcard):
    admin, member = dav.new_user(), dav.new_user()
    store = server.core().store
    store.update_account(admin[0], first_name="Ada", last_name="Admin", organisation="Engines Ltd", photo=PNG)
    group = _group(server, admin[0], (member[0], False))
    found = _bound(dav, member, f"{group}: Members")
    assert found is not None
    name, privileges = found
    assert "read" in privileges and "write" not in privileges and "bind" not in privileges
    book = f"/dav/{member[0]}/{name}/"
    query = b"""<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/>
<CR:address-data/></D:prop></CR:addressbook-query>"""
    reply = dav.request("REPORT", book, member, query, {"Depth": "1"})
    assert reply.status == 207
    cards = [e.text or "" for e in ET.fromstring(reply.body).iter("{urn:ietf:params:xml:ns:carddav}address-data")]
    assert len(cards) == 2
    ada = next(c for c in cards if "FN:Ada Admin" in c)
    assert "N:Admin;Ada;;;" in ada and "ORG:Engines Ltd" in ada and f"EMAIL;TYPE=INTERNET:{admin[0]}" in ada
    assert "PHOTO;ENCODING=b;TYPE=PNG:" in ada
    assert any(f"EMAIL;TYPE=INTERNET:{member[0]}" in c for c in cards)
    # read-only, even for the group's administrator
    admin_book = _bound(dav, admin, f"{group}: Members")
    assert admin_book is not None and "write" not in admin_book[1]
    assert dav.request("PUT", f"/dav/{admin[0]}/{admin_book[0]}/x.vcf", admin, make_vcard("x"),
                       {"Content-Type": "text/vcard"}).status == 403

    # A profile change and a new member show up; RFC 6578 sync reports exactly that.
    sync = b"""<D:sync-collection xmlns:D="DAV:"><D:sync-token/><D:sync-level>1</D:sync-level><D:prop><D:getetag/>
</D:prop></D:sync-collection>"""
    first = dav.request("REPORT", book, member, sync)
    token = ET.fromstring(first.body).findtext("{DAV:}sync-token")
    third = dav.new_user()
    store.add_member(group, third[0])
    store.update_account(admin[0], organisation="Analytical Engines")
    again = sync.replace(b"<D:sync-token/>", f"<D:sync-token>{token}</D:sync-token>".encode())
    changed = dav.request("REPORT", book, member, again)
    assert changed.status == 207
    hrefs = {h.text.rsplit("/", 1)[-1] for h in ET.fromstring(changed.body).iter("{DAV:}href") if h.text}
    admin_id, third_id = store.get_account(admin[0]).id, store.get_account(third[0]).id
    assert hrefs == {f"{admin_id}.vcf", f"{third_id}.vcf"}
    store.remove_member(group, third[0])
    assert dav.request("GET", f"{book}{third_id}.vcf", member).status == 404
    assert _bound(dav, third, f"{group}: Members") is None


def test_caldav_client_lists_shared_calendars(dav, server, make_event):
    """RFC 4791 §6.2.1: a client that lists the calendar home finds the group calendar there."""
    admin, member = dav.new_user(), dav.new_user()
    group = _group(server, admin[0], (member[0], False))
    calendars = {c.get_display_name(): c for c in dav.client(member).principal().calendars()}
    assert f"{group}: Calendar" in calendars
    assert "Calendar" in calendars  # the member's own
    admin_calendars = {c.get_display_name(): c for c in dav.client(admin).principal().calendars()}
    admin_calendars[f"{group}: Calendar"].save_event(make_event(f"team-{secrets.token_hex(3)}@example.org").decode())
    shared = calendars[f"{group}: Calendar"]
    assert len(shared.search(start=dt.datetime(2026, 11, 1, tzinfo=dt.UTC), end=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
                             event=True)) == 1  # RFC 4791 §7.8 calendar-query through the binding
    with pytest.raises(caldav.lib.error.DAVError):
        shared.save_event(make_event(f"member-{secrets.token_hex(3)}@example.org").decode())


def test_shared_prefix_is_reserved(dav, user):
    assert dav.request("MKCALENDAR", f"/dav/{user[0]}/shared-999999/", user).status == 403
