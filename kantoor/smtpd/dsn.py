"""The DSN extension's parameters (RFC 3461): NOTIFY and ORCPT per recipient, RET and ENVID per message.

ENVID and ORCPT travel as ``xtext`` (RFC 3461 section 4): kept encoded in the
queue, so they can be passed on to a next hop unchanged, and decoded only when
a report shows them (``Original-Envelope-Id``, ``Original-Recipient``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})
# RFC 3461 section 4.1: without NOTIFY an MTA may act as if NOTIFY=FAILURE or NOTIFY=FAILURE,DELAY was given.
DEFAULT_NOTIFY = frozenset({"FAILURE", "DELAY"})

_XTEXT_CHAR = re.compile(r"^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*$")
_HEXCHAR = re.compile(r"\+([0-9A-Fa-f]{2})")
# ORCPT=addr-type ";" xtext; addr-type is an atom (RFC 3461 section 4.2).
_ORCPT = re.compile(r"^[A-Za-z0-9-]+;.+$")


def is_xtext(value: str) -> bool:
    return bool(_XTEXT_CHAR.match(value))


def xtext_decode(value: str) -> str:
    return _HEXCHAR.sub(lambda m: chr(int(m.group(1), 16)), value)


def parse_notify(value: str) -> frozenset[str] | None:
    """The NOTIFY keywords, empty for NEVER; None if the value is not valid (RFC 3461 section 4.1)."""
    words = {w.strip().upper() for w in value.split(",")}
    if words == {"NEVER"}:
        return frozenset()
    if not words or not words <= NOTIFY_VALUES:
        return None
    return frozenset(words)


def valid_orcpt(value: str) -> bool:
    return bool(_ORCPT.match(value)) and is_xtext(value.split(";", 1)[1])


def raw_parameters(arg: str) -> dict[str, str]:
    """ESMTP parameters after the address of a MAIL/RCPT argument, keyword upper-cased, value as sent."""
    _, _, rest = arg.partition(">") if ">" in arg else ("", "", arg.split(None, 1)[1] if " " in arg else "")
    result = {}
    for word in rest.split():
        key, _, value = word.partition("=")
        result[key.upper()] = value
    return result


@dataclass(frozen=True)
class RecipientDSN:
    """What one recipient's sender asked for; ``notify`` None means NOTIFY was not given."""

    notify: frozenset[str] | None = None
    orcpt: str = ""  # "rfc822;alice+40example.org" as sent (xtext)

    def wants(self, event: str) -> bool:
        """Should a DSN for ``event`` (SUCCESS, FAILURE, DELAY) go out for this recipient?"""
        return event in (DEFAULT_NOTIFY if self.notify is None else self.notify)

    def to_json(self) -> dict[str, str]:
        data = {"orcpt": self.orcpt} if self.orcpt else {}
        if self.notify is not None:
            data["notify"] = ",".join(sorted(self.notify)) or "NEVER"
        return data

    @classmethod
    def from_json(cls, data: object) -> RecipientDSN:
        if not isinstance(data, dict):
            return cls()
        notify = data.get("notify")
        return cls(parse_notify(notify) if isinstance(notify, str) else None, str(data.get("orcpt", "")))

    def rcpt_parameters(self) -> list[str]:
        """The parameters to pass on to a next hop that offers DSN (RFC 3461 section 5.2.1)."""
        params = []
        if self.notify is not None:
            params.append("NOTIFY=" + (",".join(sorted(self.notify)) or "NEVER"))
        if self.orcpt:
            params.append(f"ORCPT={self.orcpt}")
        return params

    def original_recipient(self) -> str:
        """``address-type; address`` for the Original-Recipient field, xtext decoded (RFC 3464 section 2.3.1)."""
        if not self.orcpt:
            return ""
        kind, _, address = self.orcpt.partition(";")
        return f"{kind}; {xtext_decode(address)}"
