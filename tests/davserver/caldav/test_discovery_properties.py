"""Discovery properties that must tell the truth: RFC 6764 well-known URLs, RFC 6638 §2.4.1
calendar-user-address-set, RFC 3744 §5.4 current-user-privilege-set, RFC 3253 §3.1.5
supported-report-set and RFC 4331 §3-4 quota properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import unquote

import pytest

D, C, CR = "DAV:", "urn:ietf:params:xml:ns:caldav", "urn:ietf:params:xml:ns:carddav"


@pytest.fixture(scope="module")
def owner(dav) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return dav.new_user()


def _prop(dav, auth, path: str, name: str, depth: str = "0") -> list[ET.Element]:  # type: ignore[no-untyped-def]
    ns, local = name[1:].split("}")
    body = f'<D:propfind xmlns:D="DAV:" xmlns:X="{ns}"><D:prop><X:{local}/></D:prop></D:propfind>'.encode()
    reply = dav.request("PROPFIND", path, auth, body, {"Depth": depth, "Content-Type": "application/xml"})
    assert reply.status == 207, reply.text
    found = []
    for propstat in ET.fromstring(reply.body).iter(f"{{{D}}}propstat"):
        if "200" in (propstat.findtext(f"{{{D}}}status") or ""):
            found.extend(propstat.findall(f"{{{D}}}prop/{name}"))
    return found


def test_rfc6764_5_well_known_urls_redirect_to_the_context_path(dav):
    for service in ("caldav", "carddav"):
        reply = dav.request("GET", f"/.well-known/{service}", None)
        assert reply.status in (301, 302, 307, 308) and reply.headers["Location"] == "/dav/"


def test_rfc6638_2_4_1_calendar_user_address_set_lists_the_accounts_mailto_addresses(dav, owner):
    for depth, path in (("0", f"/dav/{owner[0]}/"), ("1", "/dav/")):
        (element,) = _prop(dav, owner, path, f"{{{C}}}calendar-user-address-set", depth)
        hrefs = [unquote(h.text or "") for h in element.findall(f"{{{D}}}href")]
        assert hrefs[0] == f"mailto:{owner[0]}"
        assert f"/dav/{owner[0]}/" in hrefs
        for home in (f"{{{C}}}calendar-home-set", f"{{{CR}}}addressbook-home-set", f"{{{D}}}principal-URL"):
            (element,) = _prop(dav, owner, path, home, depth)
            assert unquote(element.findtext(f"{{{D}}}href") or "") == f"/dav/{owner[0]}/"


def _privileges(element: ET.Element) -> set[str]:
    return {child.tag for privilege in element.findall(f"{{{D}}}privilege") for child in privilege}


def test_rfc3744_5_4_current_user_privilege_set_is_what_the_acl_grants(dav, owner):
    (calendar,) = _prop(dav, owner, f"/dav/{owner[0]}/calendar/", f"{{{D}}}current-user-privilege-set")
    assert {f"{{{D}}}all", f"{{{D}}}read", f"{{{D}}}write-content", f"{{{D}}}bind",
            f"{{{C}}}read-free-busy"} <= _privileges(calendar)
    (book,) = _prop(dav, owner, f"/dav/{owner[0]}/contacts/", f"{{{D}}}current-user-privilege-set")
    assert f"{{{C}}}read-free-busy" not in _privileges(book)
    (root,) = _prop(dav, owner, "/dav/", f"{{{D}}}current-user-privilege-set")
    assert f"{{{D}}}read" in _privileges(root)
    assert not _privileges(root) & {f"{{{D}}}all", f"{{{D}}}write", f"{{{D}}}write-content", f"{{{D}}}bind"}


def test_rfc3253_3_1_5_supported_report_set_lists_only_reports_that_work(dav, owner):
    def reports(path: str) -> set[str]:
        (element,) = _prop(dav, owner, path, f"{{{D}}}supported-report-set")
        return {r.tag for r in element.iter() if r.tag not in (f"{{{D}}}supported-report-set",
                                                                  f"{{{D}}}supported-report", f"{{{D}}}report")}

    assert reports(f"/dav/{owner[0]}/calendar/") == {
        f"{{{D}}}sync-collection", f"{{{C}}}calendar-multiget", f"{{{C}}}calendar-query", f"{{{C}}}free-busy-query"}
    assert reports(f"/dav/{owner[0]}/contacts/") == {
        f"{{{D}}}sync-collection", f"{{{CR}}}addressbook-multiget", f"{{{CR}}}addressbook-query"}
    assert reports(f"/dav/{owner[0]}/") == set()  # no expand-property / principal-property-search


def test_rfc4331_quota_used_and_available_bytes(dav, owner, make_event):
    def quota(path: str) -> tuple[int, int]:
        (used,) = _prop(dav, owner, path, f"{{{D}}}quota-used-bytes")
        (available,) = _prop(dav, owner, path, f"{{{D}}}quota-available-bytes")
        return int(used.text or ""), int(available.text or "")

    used, available = quota(f"/dav/{owner[0]}/calendar/")
    body = make_event("quota@example.org")
    assert dav.request("PUT", f"/dav/{owner[0]}/calendar/quota.ics", owner, body,
                       {"Content-Type": "text/calendar"}).status == 201
    used_after, available_after = quota(f"/dav/{owner[0]}/")
    assert used_after > used and available_after < available
    allprop = dav.request("PROPFIND", f"/dav/{owner[0]}/calendar/", owner,
                          b'<propfind xmlns="DAV:"><allprop/></propfind>', {"Depth": "0"})
    assert "quota-used-bytes" not in allprop.text  # RFC 4331 §3: not part of allprop
