"""vCard 3.0 (RFC 2426) ↔ 4.0 (RFC 6350) conversion: what differs is converted, everything else
kept, and a round trip gives the card back."""

from __future__ import annotations

import vobject

from kantoor.davserver.caldav.vcard_negotiation import requested_version
from kantoor.davserver.caldav.vcard_versions import convert

PHOTO = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
V3 = ("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:urn:uuid:ada\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\n"
      "item1.TEL;TYPE=WORK;TYPE=VOICE;TYPE=pref:+44 20 7946 0001\r\nitem1.X-ABLabel:office\r\n"
      "EMAIL;TYPE=INTERNET,HOME:ada@example.org\r\n"
      f"PHOTO;ENCODING=b;TYPE=PNG:{PHOTO}\r\n"
      "LOGO;VALUE=uri;TYPE=JPEG:https://example.org/logo.jpg\r\n"
      "X-ANNIVERSARY:1835-07-08\r\nX-GENDER:Female\r\nNOTE:Analyst\\, poet\\; countess\r\n"
      "X-CUSTOM;X-PARAM=\"a:b\":kept as is\r\nEND:VCARD\r\n")
V4_GROUP = ("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:team\r\nKIND:group\r\nFN:Team\r\n"
            "MEMBER:urn:uuid:ada\r\nMEMBER:urn:uuid:alan\r\nTEL;VALUE=uri;TYPE=work:tel:+44-20-7946-0002\r\n"
            "GENDER:M\r\nPHOTO:data:image/jpeg;base64,/9j/4AAQ\r\nBDAY:--0203\r\nEND:VCARD\r\n")


def _lines(text: str) -> list[str]:
    return text.replace("\r\n ", "").split("\r\n")


def test_rfc6350_vcard3_to_4_converts_what_differs():
    v4 = _lines(convert(V3, "4.0"))
    assert "VERSION:4.0" in v4
    assert "item1.TEL;TYPE=work,voice;PREF=1:+44 20 7946 0001" in v4
    assert "item1.X-ABLabel:office" in v4  # untouched lines keep their exact text
    assert f"PHOTO:data:image/png;base64,{PHOTO}" in v4
    assert "LOGO;MEDIATYPE=image/jpeg:https://example.org/logo.jpg" in v4
    assert "ANNIVERSARY:1835-07-08" in v4 and "GENDER:F" in v4
    assert "NOTE:Analyst\\, poet\\; countess" in v4
    assert 'X-CUSTOM;X-PARAM="a:b":kept as is' in v4
    card = vobject.readOne(convert(V3, "4.0"))
    assert card.fn.value == "Ada Lovelace"


def test_rfc2426_vcard4_to_3_uses_the_apple_group_properties():
    v3 = _lines(convert(V4_GROUP, "3.0"))
    assert "VERSION:3.0" in v3
    assert "N:;;;;" in v3  # N is required in 3.0
    assert "X-ADDRESSBOOKSERVER-KIND:group" in v3
    assert "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:ada" in v3 and "X-ADDRESSBOOKSERVER-MEMBER:urn:uuid:alan" in v3
    assert "TEL;TYPE=work:+44-20-7946-0002" in v3
    assert "X-GENDER:Male" in v3
    assert "PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQ" in v3
    assert "BDAY;X-APPLE-OMIT-YEAR=1604:1604-02-03" in v3  # 3.0 dates need a year
    assert vobject.readOne(convert(V4_GROUP, "3.0")).fn.value == "Team"


def test_round_trips_give_the_card_back():
    assert convert(convert(convert(V3, "4.0"), "3.0"), "4.0") == convert(V3, "4.0")
    back = _lines(convert(convert(V4_GROUP, "3.0"), "4.0"))
    for line in ("KIND:group", "MEMBER:urn:uuid:ada", "GENDER:M", "PHOTO:data:image/jpeg;base64,/9j/4AAQ",
                 "BDAY:--0203"):
        assert line in back
    assert convert(V3, "3.0") == V3  # already that version: untouched


def test_long_lines_are_folded_at_75_octets_without_splitting_characters():
    card = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:" + "é" * 100 + "\r\nN:;;;;\r\nEND:VCARD\r\n"
    out = convert(card, "4.0")
    assert all(len(line.encode()) <= 75 for line in out.split("\r\n"))
    assert "FN:" + "é" * 100 in _lines(out)


def test_rfc6352_6_3_2_accept_header_picks_the_version():
    assert requested_version("text/vcard; version=4.0") == "4.0"
    assert requested_version("text/vcard;version=3.0;q=0.5, text/vcard;version=4.0;q=0.9") == "4.0"
    assert requested_version("text/vcard") is None
    assert requested_version("*/*") is None
    assert requested_version("text/vcard; version=2.1") is None
