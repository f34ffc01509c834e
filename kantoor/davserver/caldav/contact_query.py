"""addressbook-query (RFC 6352 §8.6, §10.5) text-match on FN / EMAIL turned into a Store query.

Only what the index can answer as a superset is pushed into SQL: non-negated
text-matches on FN or EMAIL with ASCII text (SQLite folds case only for ASCII).
Everything else — N, TEL, NICKNAME, ORG (not indexed columns), negations,
param-filters, is-not-defined — leaves the query to Radicale's exact filter,
which always runs on the candidates anyway.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from radicale import xmlutils

from kantoor.storage.calendars import ContactCondition

INDEXED = {"FN": "fn", "EMAIL": "email"}


def _prop_condition(prop_filter: ET.Element) -> ContactCondition | None:
    column = INDEXED.get((prop_filter.get("name") or "").upper())
    if column is None or len(prop_filter) == 0:
        return None
    matches: list[ContactCondition] = []
    for child in prop_filter:
        if child.tag != xmlutils.make_clark("CR:text-match"):
            return None  # is-not-defined, param-filter
        text = child.text or ""
        if child.get("negate-condition") == "yes" or not text.isascii() or not text:
            return None
        matches.append((column, text))
    if len(matches) == 1:
        return matches[0]
    return ("and" if prop_filter.get("test") == "allof" else "or", matches)


def sql_condition(filters: Iterable[ET.Element]) -> ContactCondition | None:
    """The Store condition for a query's CR:filter elements, or None when SQL cannot narrow it."""
    conditions: list[ContactCondition] = []
    for filter_ in filters:
        if filter_.tag != xmlutils.make_clark("CR:filter") or len(filter_) == 0:
            return None
        parts = [_prop_condition(p) for p in filter_ if p.tag == xmlutils.make_clark("CR:prop-filter")]
        if filter_.get("test", "anyof") == "allof":
            known = [p for p in parts if p is not None]
            if known:
                conditions.append(("and", known))
        elif parts and all(p is not None for p in parts):
            conditions.append(("or", [p for p in parts if p is not None]))
        else:
            return None
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else ("and", conditions)
