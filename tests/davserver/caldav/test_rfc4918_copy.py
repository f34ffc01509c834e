"""RFC 4918 §9.8 COPY of calendar objects and vCards, with the CalDAV/CardDAV preconditions
(RFC 4791 §5.3.2.1, RFC 6352 §6.3.2.1): Destination, Overwrite, 201/204, no-uid-conflict,
collection-location-ok, and rights on both sides."""

from __future__ import annotations

import xml.etree.ElementTree as ET

CT = {"Content-Type": "text/calendar"}


def _copy(dav, auth, source: str, destination: str, overwrite: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"Destination": f"{dav.base_url}{destination}"}
    if overwrite is not None:
        headers["Overwrite"] = overwrite
    return dav.request("COPY", f"/dav/{source}", auth, headers=headers)


def _sync_names(dav, auth, path: str) -> set[str]:  # type: ignore[no-untyped-def]
    body = b'<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>'
    reply = dav.request("PROPFIND", path, auth, body, {"Depth": "1"})
    return {(h.text or "").rstrip("/").rsplit("/", 1)[-1] for h in ET.fromstring(reply.body).iter("{DAV:}href")}


def test_rfc4918_9_8_copy_between_calendars_201_then_204_and_overwrite_f_412(dav, user, make_event):
    login = user[0]
    assert dav.request("MKCALENDAR", f"/dav/{login}/copies/", user).status == 201
    assert dav.request("PUT", f"/dav/{login}/calendar/c.ics", user, make_event("copy-1@example.org"), CT).status == 201
    first = _copy(dav, user, f"{login}/calendar/c.ics", f"{login}/copies/c.ics")
    assert first.status == 201
    source = dav.request("GET", f"/dav/{login}/calendar/c.ics", user)
    copied = dav.request("GET", f"/dav/{login}/copies/c.ics", user)
    assert source.status == copied.status == 200 and copied.body == source.body
    assert "c.ics" in _sync_names(dav, user, f"/dav/{login}/copies/")
    # §9.8.4: Overwrite F on an existing destination is 412; T (the default) replaces: 204.
    assert _copy(dav, user, f"{login}/calendar/c.ics", f"{login}/copies/c.ics", "F").status == 412
    assert _copy(dav, user, f"{login}/calendar/c.ics", f"{login}/copies/c.ics").status == 204
    assert _copy(dav, user, f"{login}/calendar/c.ics", f"{login}/copies/c.ics", "T").status == 204
    # the source is untouched
    assert dav.request("GET", f"/dav/{login}/calendar/c.ics", user).body == source.body


def test_rfc4791_5_3_2_1_copy_keeps_one_uid_per_calendar(dav, user, make_event):
    login = user[0]
    event = make_event("copy-uid@example.org")
    assert dav.request("PUT", f"/dav/{login}/calendar/u.ics", user, event, CT).status == 201
    same_calendar = _copy(dav, user, f"{login}/calendar/u.ics", f"{login}/calendar/u2.ics")
    assert same_calendar.status == 409 and "no-uid-conflict" in same_calendar.text
    assert dav.request("GET", f"/dav/{login}/calendar/u2.ics", user).status == 404


def test_rfc4918_9_8_copy_errors(dav, user, make_event, make_vcard):
    login = user[0]
    assert dav.request("PUT", f"/dav/{login}/calendar/e.ics", user, make_event("copy-e@example.org"), CT).status == 201
    assert "COPY" in dav.request("OPTIONS", f"/dav/{login}/calendar/", user).headers["Allow"]
    no_destination = dav.request("COPY", f"/dav/{login}/calendar/e.ics", user)
    assert no_destination.status == 400
    assert _copy(dav, user, f"{login}/calendar/missing.ics", f"{login}/tasks/m.ics").status == 404
    assert _copy(dav, user, f"{login}/calendar/e.ics", f"{login}/no-such-calendar/e.ics").status == 409
    # an event into an address book: not a calendar collection (RFC 4791 §5.3.2.1)
    wrong = _copy(dav, user, f"{login}/calendar/e.ics", f"{login}/contacts/e.ics")
    assert wrong.status == 403 and "calendar-collection-location-ok" in wrong.text
    # an event into the task list, which holds only VTODO
    tasks = _copy(dav, user, f"{login}/calendar/e.ics", f"{login}/tasks/e.ics")
    assert tasks.status == 403 and "supported-calendar-component" in tasks.text
    remote = dav.request("COPY", f"/dav/{login}/calendar/e.ics", user,
                         headers={"Destination": f"http://elsewhere.example:81/dav/{login}/calendar/x.ics"})
    assert remote.status == 502
    assert _copy(dav, user, f"{login}/calendar/e.ics", f"{login}/calendar/e.ics").status == 403
    assert _copy(dav, user, f"{login}/calendar/e.ics", f"{login}/calendar/{'x' * 1100}.ics").status in (400, 414)
    assert _copy(dav, user, f"{login}/calendar/", f"{login}/copies-of-calendar/").status == 403


def test_rfc6352_6_3_2_1_copy_of_a_vcard_between_address_books(dav, user, make_vcard):
    login = user[0]
    mkcol = (b'<D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype>'
             b"<D:collection/><CR:addressbook/></D:resourcetype></D:prop></D:set></D:mkcol>")
    assert dav.request("MKCOL", f"/dav/{login}/archive/", user, mkcol).status == 201
    card = make_vcard("copy-card@example.org", name="Grace Hopper", email="grace@example.org")
    assert dav.request("PUT", f"/dav/{login}/contacts/g.vcf", user, card, {"Content-Type": "text/vcard"}).status == 201
    assert _copy(dav, user, f"{login}/contacts/g.vcf", f"{login}/archive/g.vcf").status == 201
    assert "FN:Grace Hopper" in dav.request("GET", f"/dav/{login}/archive/g.vcf", user).text
    # The copy is indexed like any vCard: an addressbook-query finds it.
    query = b"""<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/>
</D:prop><CR:filter><CR:prop-filter name="EMAIL"><CR:text-match>grace@</CR:text-match></CR:prop-filter></CR:filter>
</CR:addressbook-query>"""
    found = dav.request("REPORT", f"/dav/{login}/archive/", user, query, {"Depth": "1"})
    assert found.status == 207 and "g.vcf" in found.text
    wrong = _copy(dav, user, f"{login}/contacts/g.vcf", f"{login}/calendar/g.vcf")
    assert wrong.status == 403 and "addressbook-collection-location-ok" in wrong.text


def test_rfc4918_9_8_copy_needs_read_on_the_source_and_bind_on_the_destination(dav, server, make_event):
    owner, reader = dav.new_user(), dav.new_user()
    store = server.core().store
    owner_account, reader_account = store.get_account(owner[0]), store.get_account(reader[0])
    calendar = store.find_collection(owner_account.principal_id, "calendar", "calendar", owner_account.principal_id)
    assert dav.request("PUT", f"/dav/{owner[0]}/calendar/s.ics", owner, make_event("copy-s@example.org"),
                       CT).status == 201
    stranger_copy = _copy(dav, reader, f"{owner[0]}/calendar/s.ics", f"{reader[0]}/calendar/s.ics")
    assert stranger_copy.status == 403  # no right on the source
    store.grant(calendar.id, None, reader_account.principal_id, "read", actor=owner_account.principal_id)
    assert _copy(dav, reader, f"{owner[0]}/calendar/s.ics", f"{reader[0]}/calendar/s.ics").status == 201
    assert dav.request("GET", f"/dav/{reader[0]}/calendar/s.ics", reader).status == 200
    # read-only on the owner's calendar: cannot copy into it
    assert dav.request("PUT", f"/dav/{reader[0]}/calendar/r.ics", reader, make_event("copy-r@example.org"),
                       CT).status == 201
    assert _copy(dav, reader, f"{reader[0]}/calendar/r.ics", f"{owner[0]}/calendar/r.ics").status == 403
    assert dav.request("GET", f"/dav/{owner[0]}/calendar/r.ics", owner).status == 404
