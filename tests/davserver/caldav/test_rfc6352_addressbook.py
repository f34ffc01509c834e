"""RFC 6352 (CardDAV) over plain HTTP: the default address book, vCard round trips,
addressbook-multiget and addressbook-query."""

from __future__ import annotations

import xml.etree.ElementTree as ET

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


V3_CARD = (b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:negotiated@example.org\r\nFN:Grace Hopper\r\nN:Hopper;Grace;;;\r\n"
           b"X-ADDRESSBOOKSERVER-KIND:individual\r\nEMAIL;TYPE=INTERNET,pref:grace@example.org\r\nEND:VCARD\r\n")


def test_rfc6352_6_3_2_get_serves_the_vcard_version_the_client_accepts(dav, user):
    path = f"/dav/{user[0]}/contacts/negotiated.vcf"
    assert dav.request("PUT", path, user, V3_CARD, {"Content-Type": "text/vcard"}).status == 201
    stored = dav.request("GET", path, user)
    assert "VERSION:3.0" in stored.text
    as_4 = dav.request("GET", path, user, headers={"Accept": "text/vcard; version=4.0"})
    assert as_4.status == 200 and "VERSION:4.0" in as_4.text and "KIND:individual" in as_4.text
    assert "EMAIL;TYPE=internet;PREF=1:grace@example.org" in as_4.text
    assert as_4.headers["ETag"] == stored.headers["ETag"] and "Accept" in as_4.headers["Vary"]
    as_3 = dav.request("GET", path, user, headers={"Accept": "text/vcard;version=3.0"})
    assert as_3.body == stored.body


def _address_data_report(version: str, hrefs: list[str]) -> bytes:
    refs = "".join(f"<D:href>{h}</D:href>" for h in hrefs)
    return (f'<CR:addressbook-multiget xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/>'
            f'<CR:address-data content-type="text/vcard" version="{version}"/></D:prop>{refs}'
            f"</CR:addressbook-multiget>").encode()


def test_rfc6352_10_4_address_data_version_in_multiget_and_query(dav, user):
    v4 = (b"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:v4-card\r\nFN:Alan Turing\r\nKIND:group\r\n"
          b"MEMBER:urn:uuid:negotiated\r\nEND:VCARD\r\n")
    base = f"/dav/{user[0]}/contacts/"
    assert dav.request("PUT", base + "three.vcf", user, V3_CARD, {"Content-Type": "text/vcard"}).status == 201
    assert dav.request("PUT", base + "four.vcf", user, v4, {"Content-Type": "text/vcard"}).status == 201
    hrefs = [f"/dav/{user[0].replace('@', '%40')}/contacts/{n}" for n in ("three.vcf", "four.vcf")]
    as_3 = dav.request("REPORT", base, user, _address_data_report("3.0", hrefs), {"Depth": "1"})
    assert as_3.status == 207
    assert "VERSION:4.0" not in as_3.text and "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:negotiated" in as_3.text
    as_4 = dav.request("REPORT", base, user, _address_data_report("4.0", hrefs), {"Depth": "1"})
    assert "VERSION:3.0" not in as_4.text and "KIND:individual" in as_4.text
    query = (b'<CR:addressbook-query xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop>'
             b'<CR:address-data content-type="text/vcard" version="4.0"/></D:prop><CR:filter>'
             b'<CR:prop-filter name="FN"><CR:text-match>grace</CR:text-match></CR:prop-filter></CR:filter>'
             b"</CR:addressbook-query>")
    found = dav.request("REPORT", base, user, query, {"Depth": "1"})
    assert found.status == 207 and "VERSION:4.0" in found.text and "FN:Grace Hopper" in found.text
    unsupported = dav.request("REPORT", base, user, _address_data_report("2.1", hrefs), {"Depth": "1"})
    assert unsupported.status == 403 and "supported-address-data" in unsupported.text


def test_rfc6352_6_2_2_supported_address_data_lists_3_and_4(dav, user):
    body = (b'<D:propfind xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop>'
            b"<CR:supported-address-data/></D:prop></D:propfind>")
    reply = dav.request("PROPFIND", f"/dav/{user[0]}/contacts/", user, body, {"Depth": "0"})
    assert reply.status == 207
    types = {e.get("version") for e in ET.fromstring(reply.body).iter(
        "{urn:ietf:params:xml:ns:carddav}address-data-type")}
    assert types == {"3.0", "4.0"}
