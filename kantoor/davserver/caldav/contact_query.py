"""addressbook-query (RFC 6352 §8.6, §10.5) on FN, N, EMAIL, TEL, NICKNAME and ORG.

A filter made only of prop-filters on those properties (text-match with any
collation, match type and negate-condition, is-not-defined, or "is defined")
is answered here: the vCard search columns give the candidates in SQL (a
superset, see :mod:`kantoor.storage.card_search`) and the exact RFC 6352 test
runs on each candidate's values, so Radicale never parses a card for it.
Anything else (param-filter, other properties) is left to Radicale's filter.

Semantics (RFC 6352 §10.5): the filter's ``test`` (anyof by default) combines its
prop-filters; a prop-filter matches when the card has the property and its
``test`` (anyof by default) over its text-matches holds; a text-match holds when
one instance of the property has a value that matches (negate-condition inverts
that); the collation defaults to ``i;unicode-casemap`` and must be one of
``i;octet``, ``i;ascii-casemap``, ``i;unicode-casemap`` (403 ``supported-collation``
otherwise).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from radicale import xmlutils

from kantoor.davserver.caldav.preconditions import DavPrecondition
from kantoor.storage.calendars import ContactCondition
from kantoor.storage.card_search import COLLATIONS, COLUMN_OF_PROPERTY, DEFAULT_COLLATION, MATCH_TYPES, text_matches

clark = xmlutils.make_clark


@dataclass(frozen=True)
class TextMatch:
    text: str
    collation: str
    match_type: str
    negate: bool

    def holds(self, values: list[str]) -> bool:
        return text_matches(values, self.text, self.collation, self.match_type) != self.negate


@dataclass
class PropFilter:
    name: str
    all_of: bool = False
    not_defined: bool = False
    matches: list[TextMatch] = field(default_factory=list)

    def holds(self, card: dict[str, list[str]]) -> bool:
        if self.not_defined:
            return self.name not in card
        if self.name not in card:
            return False
        if not self.matches:
            return True
        results = (m.holds(card[self.name]) for m in self.matches)
        return all(results) if self.all_of else any(results)

    def sql(self) -> ContactCondition:
        if self.not_defined:
            return ("defined", self.name, False)
        defined: ContactCondition = ("defined", self.name, True)
        # A negated match cannot narrow a superset; the others can.
        positive = [("match", self.name, m.match_type, m.text) for m in self.matches if not m.negate]
        if self.all_of:
            return ("and", [defined, *positive])
        if positive and len(positive) == len(self.matches):
            return ("or", positive)
        return defined


@dataclass
class ContactQuery:
    all_of: bool
    props: list[PropFilter]

    def holds(self, card: dict[str, list[str]]) -> bool:
        results = (p.holds(card) for p in self.props)
        return all(results) if self.all_of else any(results)

    def sql(self) -> ContactCondition:
        return ("and" if self.all_of else "or", [p.sql() for p in self.props])


def _text_match(element: ET.Element) -> TextMatch:
    collation = element.get("collation", DEFAULT_COLLATION)
    if collation not in COLLATIONS:
        raise DavPrecondition(403, "CR:supported-collation", f"collation {collation!r} is not supported")
    match_type = element.get("match-type", "contains")
    if match_type not in MATCH_TYPES:
        raise ValueError(f"unknown text-match match-type {match_type!r}")
    return TextMatch(element.text or "", collation, match_type, element.get("negate-condition") == "yes")


def parse_query(filters: Iterable[ET.Element]) -> ContactQuery | None:
    """The query of the REPORT's CR:filter, or None when only Radicale's filter can answer it.

    Raises DavPrecondition for an unsupported collation and ValueError (400) for a bad match type."""
    filters = list(filters)
    if len(filters) != 1 or filters[0].tag != clark("CR:filter"):
        return None
    query = ContactQuery(all_of=filters[0].get("test", "anyof") == "allof", props=[])
    for element in filters[0]:
        name = (element.get("name") or "").upper()
        if element.tag != clark("CR:prop-filter") or name not in COLUMN_OF_PROPERTY:
            return None
        prop = PropFilter(name, all_of=element.get("test", "anyof") == "allof")
        for child in element:
            if child.tag == clark("CR:is-not-defined") and len(element) == 1:
                prop.not_defined = True
            elif child.tag == clark("CR:text-match"):
                prop.matches.append(_text_match(child))
            else:
                return None  # param-filter
        query.props.append(prop)
    return query if query.props else None
