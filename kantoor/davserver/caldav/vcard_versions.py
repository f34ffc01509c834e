"""vCard 3.0 (RFC 2426) ↔ 4.0 (RFC 6350) conversion, for clients that ask for one version.

No maintained Python library converts between the two (vobject parses both but
writes what it read), so this works on content lines, changing only what differs
between the versions and keeping every other line byte-for-byte:

- ``VERSION``;
- binary PHOTO / LOGO / SOUND / KEY: 3.0 ``ENCODING=b;TYPE=JPEG:<base64>`` ↔ 4.0
  ``data:image/jpeg;base64,<base64>``; a link: 3.0 ``VALUE=uri`` ↔ 4.0 plain URI;
- TYPE parameters: 3.0 ``TYPE=pref`` ↔ 4.0 ``PREF=1``; repeated ``TYPE=`` are joined;
- a 4.0 ``TEL;VALUE=uri:tel:…`` becomes 3.0 text (``TEL:…``);
- 4.0 KIND / MEMBER ↔ Apple's 3.0 ``X-ADDRESSBOOKSERVER-KIND`` / ``-MEMBER`` (what
  macOS/iOS Contacts and DAVx5 use for groups in 3.0);
- a 4.0 date without a year (``BDAY:--0203``) ↔ Apple's 3.0 ``BDAY;X-APPLE-OMIT-YEAR=1604:1604-02-03``;
- ANNIVERSARY ↔ ``X-ANNIVERSARY``; GENDER (``M``/``F``/…) ↔ ``X-GENDER`` (``Male``/``Female``/…);
- 3.0 requires N: a 4.0 card without one gets an empty N.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kantoor.storage.card_search import split_content_line, unfolded_lines

VERSIONS = ("3.0", "4.0")
BINARY_PROPERTIES = frozenset({"PHOTO", "LOGO", "SOUND", "KEY"})
RENAMED_TO_3 = {"KIND": "X-ADDRESSBOOKSERVER-KIND", "MEMBER": "X-ADDRESSBOOKSERVER-MEMBER",
                "ANNIVERSARY": "X-ANNIVERSARY", "GENDER": "X-GENDER"}
RENAMED_TO_4 = {old: new for new, old in RENAMED_TO_3.items()}
GENDER_TO_3 = {"M": "Male", "F": "Female", "O": "Other", "N": "None", "U": "Unknown"}
GENDER_TO_4 = {name.lower(): letter for letter, name in GENDER_TO_3.items()}
# Media subtype names as 3.0 writes them in TYPE=, for the common ones whose name differs.
MEDIA_TYPE_OF_3 = {"JPG": "image/jpeg", "JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
                   "BMP": "image/bmp", "TIFF": "image/tiff", "WAVE": "audio/wav", "PCM": "audio/wav",
                   "PGP": "application/pgp-keys", "X509": "application/pkix-cert"}
DATE_PROPERTIES = frozenset({"BDAY", "ANNIVERSARY", "X-ANNIVERSARY"})
_NO_YEAR = re.compile(r"^--(\d{2})-?(\d{2})$")  # 4.0 date without a year (RFC 6350 §4.3.1)
_DATA_URI = re.compile(r"^data:([^;,]*)((?:;[^;,]*)*),(.*)$", re.S)


@dataclass
class ContentLine:
    group: str
    name: str
    params: list[tuple[str, list[str]]] = field(default_factory=list)
    value: str = ""
    raw: str = field(default="", compare=False)  # the line as read, kept when nothing changes

    @classmethod
    def parse(cls, line: str) -> ContentLine | None:
        parsed = split_content_line(line)
        if parsed is None:
            return None
        name, raw_params, value = parsed
        head = line[:len(line) - len(value) - 1].split(";", 1)[0]
        group = head.rsplit(".", 1)[0] + "." if "." in head else ""
        params: list[tuple[str, list[str]]] = []
        for raw in _split_outside_quotes(raw_params, ";") if raw_params else []:
            key, has_value, text = raw.partition("=")
            values = [v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v
                      for v in _split_outside_quotes(text, ",")] if has_value else []
            if not has_value:  # vCard 2.1 style bare parameter ("WORK"): a TYPE
                key, values = "TYPE", [key]
            params.append((key.strip().upper(), values))
        return cls(group, name, params, value, raw=line)

    def param(self, key: str) -> list[str]:
        return [v for k, values in self.params if k == key for v in values]

    def without(self, *keys: str) -> list[tuple[str, list[str]]]:
        return [(k, v) for k, v in self.params if k not in keys]

    def serialize(self, original: ContentLine | None = None) -> str:
        if original is not None and original == self and original.raw:
            return _fold(original.raw)
        text = self.group + self.name
        for key, values in self.params:
            quoted = [f'"{v}"' if any(c in v for c in ':;,') else v for v in values]
            text += f";{key}=" + ",".join(quoted)
        return _fold(text + ":" + self.value)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _fold(line: str) -> str:
    """RFC 6350 §3.2: lines longer than 75 octets are folded (never inside a UTF-8 sequence)."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    out, start, limit = [], 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1
        out.append(data[start:end].decode("utf-8"))
        start, limit = end, 74  # continuation lines start with a space
    return "\r\n ".join(out)


def _types(line: ContentLine) -> list[str]:
    return [t for value in line.param("TYPE") for t in value.split(",") if t]


def card_version(text: str) -> str | None:
    for raw in unfolded_lines(text):
        if raw.upper().startswith("VERSION:"):
            return raw.split(":", 1)[1].strip()
    return None


def convert(text: str, version: str) -> str:
    """The vCard(s) in ``text`` as ``version`` ("3.0" or "4.0"); unchanged when already so."""
    if version not in VERSIONS:
        raise ValueError(f"cannot convert to vCard {version}")
    if card_version(text) == version:
        return text
    out: list[str] = []
    card: list[ContentLine | str] = []
    for raw in unfolded_lines(text):
        if not raw.strip():
            continue
        line = ContentLine.parse(raw)
        if line is None:
            card.append(raw)
            continue
        if line.name == "BEGIN" and line.value.strip().upper() == "VCARD":
            card = [line]
        elif line.name == "END" and line.value.strip().upper() == "VCARD":
            card.append(line)
            out.extend(_convert_card(card, version))
            card = []
        else:
            card.append(line)
    return "\r\n".join(out) + "\r\n"


def _convert_card(card: list[ContentLine | str], version: str) -> list[str]:
    current = next((c.value.strip() for c in card if isinstance(c, ContentLine) and c.name == "VERSION"), "3.0")
    if current == version:
        return [c.serialize(original=c) if isinstance(c, ContentLine) else c for c in card]
    to_4 = version == "4.0"
    lines: list[str] = []
    has_n = any(isinstance(c, ContentLine) and c.name == "N" for c in card)
    for entry in card:
        if not isinstance(entry, ContentLine):
            lines.append(entry)
            continue
        line = _to_4(entry) if to_4 else _to_3(entry)
        lines.append(line.serialize(original=entry))
        if line.name == "VERSION" and not to_4 and not has_n:
            lines.append("N:;;;;")  # required in 3.0 (RFC 2426 §5)
    return lines


def _to_4(line: ContentLine) -> ContentLine:
    if line.name == "VERSION":
        return ContentLine(line.group, "VERSION", [], "4.0")
    name = RENAMED_TO_4.get(line.name, line.name)
    value = line.value
    params = line.params
    year = line.param("X-APPLE-OMIT-YEAR")
    if line.name in DATE_PROPERTIES and year and value.startswith(year[0] + "-"):
        month_day = value[len(year[0]) + 1:].replace("-", "")[:4]
        return ContentLine(line.group, name, _retype(line.without("X-APPLE-OMIT-YEAR"), to_4=True),
                           f"--{month_day}")
    if name == "KIND":
        value = value.lower()
    elif name == "GENDER":
        value = GENDER_TO_4.get(value.strip().lower(), value)
    if line.name in BINARY_PROPERTIES:
        encoding = [e.lower() for e in line.param("ENCODING")]
        if "b" in encoding or "base64" in encoding:
            subtype = (_types(line) or [""])[0]
            media = MEDIA_TYPE_OF_3.get(subtype.upper(), subtype.lower() if "/" in subtype else
                                        f"image/{subtype.lower()}" if subtype else "application/octet-stream")
            return ContentLine(line.group, name, [p for p in line.without("ENCODING", "TYPE")],
                               f"data:{media};base64,{value}")
        # A link: 3.0 names the media type in TYPE, 4.0 in MEDIATYPE.
        media = [MEDIA_TYPE_OF_3.get(t.upper(), t.lower() if "/" in t else f"image/{t.lower()}") for t in _types(line)]
        params = line.without("VALUE", "TYPE") + ([("MEDIATYPE", media[:1])] if media else [])
        return ContentLine(line.group, name, params, value)
    return ContentLine(line.group, name, _retype(params, to_4=True), value)


def _to_3(line: ContentLine) -> ContentLine:
    if line.name == "VERSION":
        return ContentLine(line.group, "VERSION", [], "3.0")
    name = RENAMED_TO_3.get(line.name, line.name)
    value = line.value
    if line.name == "GENDER":
        sex = value.split(";", 1)[0].strip().upper()
        value = GENDER_TO_3.get(sex, value)
    if line.name in BINARY_PROPERTIES:
        match = _DATA_URI.match(value)
        if match and "base64" in match.group(2).lower():
            media = match.group(1).lower() or "application/octet-stream"
            subtype = next((k for k, v in MEDIA_TYPE_OF_3.items() if v == media and k != "JPG"),
                           media.rsplit("/", 1)[-1].upper())
            params = [("ENCODING", ["b"]), ("TYPE", [subtype]), *line.without("VALUE", "MEDIATYPE", "TYPE")]
            return ContentLine(line.group, name, params, match.group(3))
        media = line.param("MEDIATYPE")
        subtype = [media[0].rsplit("/", 1)[-1].upper()] if media else []
        params = [("VALUE", ["uri"]), *line.without("VALUE", "MEDIATYPE"), *([("TYPE", subtype)] if subtype else [])]
        return ContentLine(line.group, name, params, value)
    params = line.params
    no_year = _NO_YEAR.match(value) if line.name in DATE_PROPERTIES else None
    if no_year:
        # 3.0 dates always have a year: Apple's convention marks a placeholder one.
        params = [*params, ("X-APPLE-OMIT-YEAR", ["1604"])]
        value = f"1604-{no_year.group(1)}-{no_year.group(2)}"
    if line.name == "TEL" and value.lower().startswith("tel:"):
        value = value[4:]
        params = [(k, v) for k, v in params if not (k == "VALUE" and [x.lower() for x in v] == ["uri"])]
    return ContentLine(line.group, name, _retype(params, to_4=False), value)


def _retype(params: list[tuple[str, list[str]]], to_4: bool) -> list[tuple[str, list[str]]]:
    """TYPE values joined into one parameter; ``pref`` as TYPE (3.0) or PREF=1 (4.0)."""
    types: list[str] = []
    prefer = False
    others: list[tuple[str, list[str]]] = []
    for key, values in params:
        if key == "TYPE":
            for value in (t for v in values for t in v.split(",") if t):
                if value.lower() == "pref":
                    prefer = True
                elif value.lower() not in (t.lower() for t in types):
                    types.append(value.lower() if to_4 else value)
        elif key == "PREF":
            prefer = True if not to_4 else prefer
            if to_4:
                others.append((key, values))
        else:
            others.append((key, values))
    if prefer and not to_4:
        types.append("pref")
    result = ([("TYPE", types)] if types else []) + others
    if prefer and to_4 and not any(k == "PREF" for k, _ in result):
        result.append(("PREF", ["1"]))
    return result
