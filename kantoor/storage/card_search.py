"""What CardDAV addressbook-query text-match (RFC 6352 §10.5.4) compares, and how.

The searchable properties (FN, N, EMAIL, TEL, NICKNAME, ORG) are pulled out of a
vCard when it is written and kept in index columns, folded with
``i;unicode-casemap`` and written as ``"\\nvalue\\nvalue\\n"``, so that SQL can find
the candidates of every match type with one LIKE: *equals* is ``%\\nx\\n%``,
*starts-with* ``%\\nx%``, *ends-with* ``%x\\n%``, *contains* ``%x%``. Folding is a
per-character mapping, so a match under ``i;octet`` or ``i;ascii-casemap`` is also
a match of the folded texts: the SQL answer is a superset, and the exact test
(:func:`text_matches`) then runs on the raw values of the few candidates.

Values: a property's text with vCard escapes removed; a structured property
(N and ORG, ``;``-separated; NICKNAME, ``,``-separated) also offers each of its
non-empty parts, so ``equals "Lovelace"`` finds ``N:Lovelace;Ada;;;``; N also offers the
name in reading order ("Ada Lovelace").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable

SEARCHABLE = ("FN", "N", "EMAIL", "TEL", "NICKNAME", "ORG")
COLUMN_OF_PROPERTY = {name: f"card_{name.lower()}" for name in SEARCHABLE}
PART_SEPARATOR = {"N": ";", "ORG": ";", "NICKNAME": ","}
MATCH_TYPES = ("equals", "contains", "starts-with", "ends-with")


def unfolded_lines(text: str) -> list[str]:
    """Content lines with RFC 6350 §3.2 folding undone."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\n ", "").replace("\n\t", "").split("\n")


def split_content_line(line: str) -> tuple[str, str, str] | None:
    """``(NAME, params, value)`` of ``[group.]NAME[;params]:value``; the colon inside a quoted
    parameter value does not end the name part."""
    quoted = False
    for position, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            head, value = line[:position], line[position + 1:]
            name, _, params = head.partition(";")
            return name.rsplit(".", 1)[-1].strip().upper(), params, value
    return None


def split_unescaped(value: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is not escaped with a backslash."""
    parts, current, escaped = [], [], False
    for char in value:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def unescape(value: str) -> str:
    out, escaped = [], False
    for char in value:
        if escaped:
            out.append("\n" if char in "nN" else char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)


def property_values(name: str, raw: str) -> list[str]:
    """The texts one property offers to text-match (see the module docstring)."""
    separator = PART_SEPARATOR.get(name)
    if separator is None:
        return [unescape(raw).strip()]
    parts = [unescape(p).strip() for p in split_unescaped(raw, separator)]
    whole = separator.join(parts).strip(separator + " ")
    values = [whole, *(p for p in parts if p)]
    if name == "N":
        # The name as people write it (prefix given additional family suffix), so that
        # "Ada Lovelace" finds N:Lovelace;Ada;;; as it finds FN.
        order = [parts[i] for i in (3, 1, 2, 0, 4) if i < len(parts)]
        values.append(" ".join(p for p in order if p))
    return list(dict.fromkeys(v for v in values if v))


def card_values(text: str) -> dict[str, list[str]]:
    """Searchable property name → every value the card offers (only properties it has)."""
    found: dict[str, list[str]] = {}
    for line in unfolded_lines(text):
        parsed = split_content_line(line)
        if parsed is None or parsed[0] not in COLUMN_OF_PROPERTY:
            continue
        values = [v for v in property_values(parsed[0], parsed[2]) if v]
        found.setdefault(parsed[0], []).extend(values)
    return found


# ------------------------------------------------------------------ collations (RFC 4790, RFC 5051)
def octet(text: str) -> str:
    return text


def ascii_casemap(text: str) -> str:
    """RFC 4790 §9.2: only a-z are folded."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def unicode_casemap(text: str) -> str:
    """RFC 5051: each character to its (simple) titlecase, then NFKD."""
    titled = []
    for char in text:
        title = char.title()
        titled.append(title if len(title) == 1 else char)
    return unicodedata.normalize("NFKD", "".join(titled))


COLLATIONS: dict[str, Callable[[str], str]] = {
    "i;octet": octet,
    "i;ascii-casemap": ascii_casemap,
    "i;unicode-casemap": unicode_casemap,
}
DEFAULT_COLLATION = "i;unicode-casemap"  # RFC 6352 §8.3


def search_column(values: Iterable[str]) -> str:
    """The index column text for one property: folded values between newlines ("" when none)."""
    folded = [unicode_casemap(v).replace("\n", " ") for v in values]
    return "\n" + "\n".join(folded) + "\n" if folded else ""


def text_matches(values: Iterable[str], text: str, collation: str, match_type: str) -> bool:
    """True when one of ``values`` matches ``text`` (RFC 6352 §10.5.4, before negate-condition)."""
    fold = COLLATIONS[collation]
    wanted = fold(text)
    for value in values:
        candidate = fold(value)
        if match_type == "equals" and candidate == wanted:
            return True
        if match_type == "contains" and wanted in candidate:
            return True
        if match_type == "starts-with" and candidate.startswith(wanted):
            return True
        if match_type == "ends-with" and candidate.endswith(wanted):
            return True
    return False


def like_pattern(text: str, match_type: str) -> str:
    """The substring the index column must contain for ``match_type`` (before LIKE escaping)."""
    folded = unicode_casemap(text).replace("\n", " ")
    return {"equals": f"\n{folded}\n", "starts-with": f"\n{folded}", "ends-with": f"{folded}\n"}.get(
        match_type, folded)
