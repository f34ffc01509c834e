"""RFC 6352 §8.6 / §10.5 addressbook-query: text-match on FN, N, EMAIL, TEL, NICKNAME and ORG,
with anyof/allof and negation; FN and EMAIL are narrowed in SQL, the rest matched exactly."""

from __future__ import annotations

import xml.etree.ElementTree as ET

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
