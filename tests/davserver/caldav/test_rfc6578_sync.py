"""RFC 6578 sync-collection from the Store's change log: every token the server issued stays
valid and returns only what changed since (deletions as 404 members); unknown tokens get
403 DAV:valid-sync-token."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

D = "DAV:"


@pytest.fixture(scope="module")
def owner(dav) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return dav.new_user()  # one account: the tests use different collections of it


def _sync(dav, auth, path: str, token: str) -> tuple[int, str, dict[str, str]]:  # type: ignore[no-untyped-def]
    body = f"""<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:"><D:sync-token>{token}</D:sync-token>
<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>""".encode()
    reply = dav.request("REPORT", path, auth, body, {"Content-Type": "application/xml"})
    if reply.status != 207:
        return reply.status, reply.text, {}
    root = ET.fromstring(reply.body)
    members = {}
    for response in root.findall(f"{{{D}}}response"):
        name = (response.findtext(f"{{{D}}}href") or "").rsplit("/", 1)[-1]
        status = response.findtext(f"{{{D}}}status") or response.findtext(f"{{{D}}}propstat/{{{D}}}status") or ""
        members[name] = status.split()[1]
    return reply.status, root.findtext(f"{{{D}}}sync-token") or "", members


def test_rfc6578_3_2_every_issued_token_stays_valid_and_reports_only_later_changes(dav, owner, make_vcard):
    user = owner
    login, path = user[0], f"/dav/{user[0]}/contacts/"

    def put(name: str, uid: str, fn: str = "Ada Lovelace") -> None:
        assert dav.request("PUT", path + name, user, make_vcard(uid, fn), {"Content-Type": "text/vcard"}).status in (
            201, 204)

    status, initial, members = _sync(dav, user, path, "")
    assert status == 207 and members == {}
    put("a.vcf", "a")
    put("b.vcf", "b")
    _, first, members = _sync(dav, user, path, initial)
    assert members == {"a.vcf": "200", "b.vcf": "200"}
    put("a.vcf", "a", "Ada King")
    assert dav.request("DELETE", path + "b.vcf", user).status in (200, 204)
    put("c.vcf", "c")
    _, second, members = _sync(dav, user, path, first)
    assert members == {"a.vcf": "200", "b.vcf": "404", "c.vcf": "200"}
    # The older tokens still work and still see everything since they were issued.
    assert _sync(dav, user, path, initial)[2] == {"a.vcf": "200", "b.vcf": "404", "c.vcf": "200"}
    assert _sync(dav, user, path, second)[2] == {}
    # Tokens of another collection, malformed or from the future: 403 valid-sync-token.
    other = _sync(dav, user, f"/dav/{login}/calendar/", "")[1]
    for bad in (other, "urn:kantoor:sync:bogus", second.rsplit(":", 1)[0] + ":999999", "http://example.org/x"):
        status, text, _ = _sync(dav, user, path, bad)
        assert status == 403 and "valid-sync-token" in text, bad


def test_rfc6578_getctag_changes_with_every_change(dav, owner, make_event):
    user = owner
    path = f"/dav/{user[0]}/calendar/"
    body = b'<D:propfind xmlns:D="DAV:" xmlns:CS="http://calendarserver.org/ns/"><D:prop><CS:getctag/></D:prop>' \
           b"</D:propfind>"

    def ctag() -> str:
        reply = dav.request("PROPFIND", path, user, body, {"Depth": "0"})
        return ET.fromstring(reply.body).findtext(".//{http://calendarserver.org/ns/}getctag") or ""

    seen = [ctag()]
    assert dav.request("PUT", path + "c.ics", user, make_event("ctag@example.org"),
                       {"Content-Type": "text/calendar"}).status == 201
    seen.append(ctag())
    assert dav.request("PUT", path + "c.ics", user, make_event("ctag@example.org", "Moved"),
                       {"Content-Type": "text/calendar"}).status == 204
    seen.append(ctag())
    assert dav.request("DELETE", path + "c.ics", user).status in (200, 204)
    seen.append(ctag())
    assert len(set(seen)) == 4 and all(seen)
