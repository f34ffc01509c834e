"""RFC 6352 (CardDAV) over plain HTTP: the default address book, vCard round trips,
addressbook-multiget and addressbook-query."""

from __future__ import annotations

PROPFIND_HOME = b"""<?xml version="1.0"?>
<D:propfind xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">
<D:prop><CR:addressbook-home-set/><D:current-user-principal/></D:prop></D:propfind>"""


def test_addressbook_home_lists_default_contacts(dav, user):
    home = dav.request("PROPFIND", f"/dav/{user[0]}/", user, PROPFIND_HOME, {"Depth": "0"})
    assert home.status == 207
    assert f"<CR:addressbook-home-set><href>/dav/{user[0].replace('@', '%40')}/</href>" in home.text
    listing = dav.request("PROPFIND", f"/dav/{user[0]}/", user,
                          b'<propfind xmlns="DAV:"><prop><resourcetype/><displayname/></prop></propfind>',
                          {"Depth": "1"})
    assert listing.status == 207
    text = listing.text.replace("\n", "")
    assert "contacts/</href><propstat><prop><resourcetype><CR:addressbook /><collection /></resourcetype>" in text
    assert "<displayname>Contacts</displayname>" in text


def test_vcard_put_get_propfind_delete(dav, user, make_vcard):
    path = f"/dav/{user[0]}/contacts/ada.vcf"
    created = dav.request("PUT", path, user, make_vcard("ada-1"), {"Content-Type": "text/vcard"})
    assert created.status == 201
    etag = created.headers["ETag"]
    got = dav.request("GET", path, user)
    assert got.status == 200
    assert got.headers["ETag"] == etag
    assert got.headers["Content-Type"].startswith("text/vcard")
    assert "FN:Ada Lovelace" in got.text
    found = dav.request("PROPFIND", path, user,
                        b'<propfind xmlns="DAV:"><prop><getetag/><getcontenttype/></prop></propfind>', {"Depth": "0"})
    assert found.status == 207
    assert etag in found.text
    assert dav.request("DELETE", path, user, headers={"If-Match": '"stale"'}).status == 412
    assert dav.request("DELETE", path, user, headers={"If-Match": etag}).status == 200
    assert dav.request("GET", path, user).status == 404


def test_addressbook_multiget_and_query(dav, user, make_vcard):
    login = user[0]
    assert dav.request("PUT", f"/dav/{login}/contacts/a.vcf", user, make_vcard("a-1", "Ada Lovelace"),
                       {"Content-Type": "text/vcard"}).status == 201
    assert dav.request("PUT", f"/dav/{login}/contacts/b.vcf", user,
                       make_vcard("b-1", "Grace Hopper", "grace@example.org"),
                       {"Content-Type": "text/vcard"}).status == 201
    multiget = f"""<?xml version="1.0"?>
<CR:addressbook-multiget xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">
<D:prop><D:getetag/><CR:address-data/></D:prop><D:href>/dav/{login}/contacts/b.vcf</D:href>
</CR:addressbook-multiget>""".encode()
    reply = dav.request("REPORT", f"/dav/{login}/contacts/", user, multiget, {"Depth": "1"})
    assert reply.status == 207
    assert "FN:Grace Hopper" in reply.text and "Ada" not in reply.text
    query = b"""<?xml version="1.0"?>
<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav">
<D:prop><D:getetag/></D:prop>
<CR:filter><CR:prop-filter name="FN">
<CR:text-match collation="i;unicode-casemap" match-type="contains">ada</CR:text-match>
</CR:prop-filter></CR:filter></CR:addressbook-query>"""
    reply = dav.request("REPORT", f"/dav/{login}/contacts/", user, query, {"Depth": "1"})
    assert reply.status == 207
    assert "a.vcf" in reply.text and "b.vcf" not in reply.text
