"""RFC 6352 §8.6 / §10.5 addressbook-query: text-match on FN, N, EMAIL, TEL, NICKNAME and ORG,
with every match type, collation, anyof/allof and negation; candidates come from the vCard search
columns in SQL, the exact test runs on their values."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import unquote

import pytest

CARDS = {
    "ada.vcf": "FN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\nEMAIL:ada@example.org\r\nTEL:+44 20 7946 0001\r\n"
               "NICKNAME:Countess\r\nORG:Analytical Engines\r\n",
    "alan.vcf": "FN:Alan Turing\r\nN:Turing;Alan;;;\r\nEMAIL:alan@bletchley.uk\r\nTEL:+44 1908 640404\r\n"
                "ORG:Bletchley Park\r\n",
    "elodie.vcf": "FN:Élodie Ýsé\r\nN:Ýsé;Élodie;;;\r\nEMAIL:elodie@example.fr\r\n",
}


@pytest.fixture(scope="module")
def book(dav) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    owner = dav.new_user()
    for name, lines in CARDS.items():
        body = f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{name}\r\n{lines}END:VCARD\r\n".encode()
        assert dav.request("PUT", f"/dav/{owner[0]}/contacts/{name}", owner, body,
                           {"Content-Type": "text/vcard"}).status == 201
    return owner


def _query(dav, owner, filters: str, test: str = "anyof") -> set[str]:  # type: ignore[no-untyped-def]
    body = f"""<?xml version="1.0" encoding="utf-8"?><CR:addressbook-query xmlns:D="DAV:"
 xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/></D:prop>
<CR:filter test="{test}">{filters}</CR:filter></CR:addressbook-query>""".encode()
    reply = dav.request("REPORT", f"/dav/{owner[0]}/contacts/", owner, body,
                        {"Depth": "1", "Content-Type": "application/xml"})
    assert reply.status == 207, reply.text
    return {(h.text or "").rsplit("/", 1)[-1] for h in ET.fromstring(reply.body).iter("{DAV:}href")}


def _match(prop: str, text: str, match_type: str = "contains", negate: bool = False) -> str:
    negation = ' negate-condition="yes"' if negate else ""
    return (f'<CR:prop-filter name="{prop}"><CR:text-match collation="i;unicode-casemap" match-type="{match_type}"'
            f"{negation}>{text}</CR:text-match></CR:prop-filter>")


def test_rfc6352_10_5_4_text_match_on_every_searchable_property(dav, book):
    assert _query(dav, book, _match("FN", "lovelace")) == {"ada.vcf"}
    assert _query(dav, book, _match("FN", "élodie")) == {"elodie.vcf"}  # non-ASCII: exact path, case-folded
    assert _query(dav, book, _match("EMAIL", "ALAN@", "starts-with")) == {"alan.vcf"}
    assert _query(dav, book, _match("EMAIL", "example.org", "ends-with")) == {"ada.vcf"}
    assert _query(dav, book, _match("N", "Turing")) == {"alan.vcf"}
    assert _query(dav, book, _match("TEL", "1908")) == {"alan.vcf"}
    assert _query(dav, book, _match("NICKNAME", "countess", "equals")) == {"ada.vcf"}
    assert _query(dav, book, _match("ORG", "park")) == {"alan.vcf"}


def test_rfc6352_10_5_anyof_allof_and_negation(dav, book):
    assert _query(dav, book, _match("FN", "ada") + _match("EMAIL", "bletchley")) == {"ada.vcf", "alan.vcf"}
    assert _query(dav, book, _match("FN", "a") + _match("ORG", "engines"), "allof") == {"ada.vcf"}
    assert _query(dav, book, _match("FN", "alan", negate=True)) == {"ada.vcf", "elodie.vcf"}


@pytest.mark.parametrize(("prop", "text", "match_type", "expected"), [
    ("FN", "ada lovelace", "equals", {"ada.vcf"}),
    ("FN", "ada", "equals", set()),
    ("FN", "TURING", "ends-with", {"alan.vcf"}),
    ("FN", "al", "starts-with", {"alan.vcf"}),
    ("N", "lovelace", "equals", {"ada.vcf"}),  # one part of a structured value
    ("N", "ada lovelace", "equals", {"ada.vcf"}),  # the name in reading order
    ("EMAIL", "@example.", "contains", {"ada.vcf", "elodie.vcf"}),
    ("TEL", "+44", "starts-with", {"ada.vcf", "alan.vcf"}),
    ("TEL", "0001", "ends-with", {"ada.vcf"}),
    ("NICKNAME", "count", "starts-with", {"ada.vcf"}),
    ("ORG", "bletchley park", "equals", {"alan.vcf"}),
    ("ORG", "100%", "contains", set()),  # LIKE wildcards are literal
])
def test_rfc6352_10_5_4_match_types(dav, book, prop, text, match_type, expected):
    assert _query(dav, book, _match(prop, text, match_type)) == expected


def _collated(prop: str, text: str, collation: str, match_type: str = "contains") -> str:
    return (f'<CR:prop-filter name="{prop}"><CR:text-match collation="{collation}" match-type="{match_type}">'
            f"{text}</CR:text-match></CR:prop-filter>")


def test_rfc6352_10_5_4_collations_octet_ascii_and_unicode_casemap(dav, book):
    """RFC 4790 §9.2/§9.3 and RFC 5051: i;octet is exact, i;ascii-casemap folds only A-Z,
    i;unicode-casemap (the default, RFC 6352 §8.3) folds every script."""
    assert _query(dav, book, _collated("FN", "Ada", "i;octet")) == {"ada.vcf"}
    assert _query(dav, book, _collated("FN", "ada", "i;octet")) == set()
    assert _query(dav, book, _collated("FN", "ada", "i;ascii-casemap")) == {"ada.vcf"}
    assert _query(dav, book, _collated("FN", "élodie", "i;ascii-casemap")) == set()  # É is not ASCII
    assert _query(dav, book, _collated("FN", "ÉLODIE ÝSÉ", "i;unicode-casemap", "equals")) == {"elodie.vcf"}
    no_collation = '<CR:prop-filter name="FN"><CR:text-match match-type="equals">élodie ýsé</CR:text-match>' \
                   "</CR:prop-filter>"
    assert _query(dav, book, no_collation) == {"elodie.vcf"}


def test_rfc6352_10_5_4_unknown_collation_is_refused_with_supported_collation(dav, book):
    body = f"""<?xml version="1.0" encoding="utf-8"?><CR:addressbook-query xmlns:D="DAV:"
 xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/></D:prop>
<CR:filter>{_collated("FN", "ada", "i;klingon")}</CR:filter></CR:addressbook-query>""".encode()
    reply = dav.request("REPORT", f"/dav/{book[0]}/contacts/", book, body, {"Depth": "1"})
    assert reply.status == 403
    assert "supported-collation" in reply.text


def test_rfc6352_10_5_1_prop_filter_test_is_not_defined_and_negation_per_property(dav, book):
    assert _query(dav, book, '<CR:prop-filter name="NICKNAME"><CR:is-not-defined/></CR:prop-filter>') == {
        "alan.vcf", "elodie.vcf"}
    assert _query(dav, book, '<CR:prop-filter name="TEL"/>') == {"ada.vcf", "alan.vcf"}
    both = ('<CR:prop-filter name="EMAIL" test="allof">'
            '<CR:text-match match-type="starts-with">a</CR:text-match>'
            '<CR:text-match match-type="ends-with">.uk</CR:text-match></CR:prop-filter>')
    assert _query(dav, book, both) == {"alan.vcf"}
    either = both.replace('test="allof"', 'test="anyof"')
    assert _query(dav, book, either) == {"ada.vcf", "alan.vcf"}
    # A negated match needs the property: cards without ORG match neither way (RFC 6352 §10.5.1).
    assert _query(dav, book, _match("ORG", "park", negate=True)) == {"ada.vcf"}
    assert _query(dav, book, _match("EMAIL", "example", negate=True) + _match("TEL", "1908"), "allof") == {
        "alan.vcf"}


def test_rfc6352_8_6_query_with_address_data_returns_the_cards(dav, book):
    body = f"""<?xml version="1.0" encoding="utf-8"?><CR:addressbook-query xmlns:D="DAV:"
 xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/><CR:address-data/></D:prop>
<CR:filter>{_match("ORG", "engines")}</CR:filter></CR:addressbook-query>""".encode()
    reply = dav.request("REPORT", f"/dav/{book[0]}/contacts/", book, body, {"Depth": "1"})
    assert reply.status == 207
    data = [e.text or "" for e in ET.fromstring(reply.body).iter("{urn:ietf:params:xml:ns:carddav}address-data")]
    assert len(data) == 1 and "FN:Ada Lovelace" in data[0]


def _limited(dav, owner, nresults: str, filters: str):  # type: ignore[no-untyped-def]
    body = f"""<?xml version="1.0" encoding="utf-8"?><CR:addressbook-query xmlns:D="DAV:"
 xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop><D:getetag/></D:prop>
<CR:filter>{filters}</CR:filter><CR:limit><CR:nresults>{nresults}</CR:nresults></CR:limit>
</CR:addressbook-query>""".encode()
    return dav.request("REPORT", f"/dav/{owner[0]}/contacts/", owner, body, {"Depth": "1"})


def test_rfc6352_8_6_1_limit_truncates_and_says_so_with_507(dav, book):
    reply = _limited(dav, book, "2", '<CR:prop-filter name="FN"/>')
    assert reply.status == 207
    responses = ET.fromstring(reply.body).findall("{DAV:}response")
    cards = [r for r in responses if (r.findtext("{DAV:}href") or "").endswith(".vcf")]
    assert len(cards) == 2
    overflow = [r for r in responses if r.findtext("{DAV:}status") == "HTTP/1.1 507 Insufficient Storage"]
    assert len(overflow) == 1
    assert unquote(overflow[0].findtext("{DAV:}href") or "") == f"/dav/{book[0]}/contacts/"
    assert overflow[0].find("{DAV:}error/{DAV:}number-of-matches-within-limits") is not None


def test_rfc6352_8_6_1_limit_not_reached_answers_everything(dav, book):
    reply = _limited(dav, book, "5", '<CR:prop-filter name="FN"/>')
    responses = ET.fromstring(reply.body).findall("{DAV:}response")
    # The status line, not the bare digits: an ETag or href may contain "507".
    assert len(responses) == 3 and b"HTTP/1.1 507" not in reply.body


def test_rfc6352_8_6_1_malformed_nresults_is_a_bad_request(dav, book):
    assert _limited(dav, book, "many", '<CR:prop-filter name="FN"/>').status == 400


def test_rfc6352_10_4_address_data_without_version_serves_the_card_as_stored(dav):
    """RFC 6352 §10.4 names 3.0 as the DTD default of ``version``; Kantoor serves each card as it was
    stored when the client names no version (as Radicale does), so a vCard 4.0 written by one
    client (DAVx5, vdirsyncer) comes back byte for byte, and a client that wants 3.0 asks for it."""
    owner = dav.new_user()
    card = ("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:4f0c0000-0000-4000-8000-000000000001\r\nKIND:group\r\n"
            "FN:Pioneers\r\nMEMBER:urn:uuid:4f0c0000-0000-4000-8000-000000000002\r\nEND:VCARD\r\n")
    assert dav.request("PUT", f"/dav/{owner[0]}/contacts/g.vcf", owner, card.encode(),
                       {"Content-Type": "text/vcard"}).status == 201

    def served(address_data: str) -> str:
        body = f"""<?xml version="1.0"?><CR:addressbook-multiget xmlns:D="DAV:"
 xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:prop>{address_data}</D:prop>
<D:href>/dav/{owner[0]}/contacts/g.vcf</D:href></CR:addressbook-multiget>""".encode()
        reply = dav.request("REPORT", f"/dav/{owner[0]}/contacts/", owner, body, {"Depth": "1"})
        return ET.fromstring(reply.body).findtext(".//{urn:ietf:params:xml:ns:carddav}address-data") or ""

    assert served("<CR:address-data/>").replace("\r\n", "\n") == card.replace("\r\n", "\n")
    as_3 = served('<CR:address-data content-type="text/vcard" version="3.0"/>')
    assert "VERSION:3.0" in as_3 and "X-ADDRESSBOOKSERVER-KIND:group" in as_3
