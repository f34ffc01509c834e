"""Enhanced status codes (RFC 2034 / RFC 3463) on every SMTP reply.

aiosmtpd writes many of its own replies without an enhanced status code
("503 Error: need MAIL command"). Since we advertise ENHANCEDSTATUSCODES, every
reply except the greeting, the EHLO/HELO answer and the 334/354 continuations
must carry one; :func:`with_enhanced_code` adds it in one place, right before
the bytes go out, so library replies and ours look the same on the wire.
"""

from __future__ import annotations

import functools
import re

# Replies of aiosmtpd whose meaning is more specific than their code's default.
_BY_TEXT = {
    "552 Error: message size exceeds fixed maximum message size":
        "552 5.3.4 Message size exceeds fixed maximum message size",
    "552 Error: Too much mail data": "552 5.3.4 Message size exceeds fixed maximum message size",
    "500 Command line too long": "500 5.5.2 Command line too long",
    "500 Line too long (see RFC5321 4.5.3.1.6)": "500 5.5.2 Line too long (RFC 5321 section 4.5.3.1.6)",
    "500 Error: strict ASCII mode": "500 5.6.7 Non-ASCII command without SMTPUTF8",
    "500 Error: bad syntax": "500 5.5.2 Syntax error",
    "500 Error: command 'AUTH' not recognized": "503 5.5.1 Send EHLO before AUTH",
    # aiosmtpd closes the connection after this one: a server that closes says 421 (RFC 5321 section 3.8).
    "502 5.5.1 Too many unrecognized commands, goodbye.":
        "421 4.7.0 Too many unrecognized commands, closing connection",
}

# The default enhanced code for a reply code (RFC 3463 section 3).
_BY_CODE = {
    "211": "2.0.0", "214": "2.0.0", "220": "2.0.0", "221": "2.0.0", "250": "2.0.0", "252": "2.5.0",
    "421": "4.3.2", "450": "4.2.1", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0", "455": "4.5.4",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4", "530": "5.7.0",
    "535": "5.7.8", "538": "5.7.11", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0",
    "555": "5.5.4",
}

_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
_REPLY = re.compile(r"^(\d{3})([ -])(.*)$", re.DOTALL)


@functools.lru_cache(maxsize=1024)
def with_enhanced_code(reply: str) -> str:
    """``reply`` with an enhanced status code after the reply code (unchanged if it has one).
    A pure function of the text, and a session sends the same few replies for every message (two
    regular expressions each were ~1 % of the MX's CPU per message): answers are kept, a bounded number."""
    if reply in _BY_TEXT:
        return _BY_TEXT[reply]
    if _HAS_ENHANCED.match(reply):
        return reply
    match = _REPLY.match(reply)
    if match is None:
        return reply
    code, sep, text = match.groups()
    if code in ("334", "354"):
        return reply  # continuations carry base64 or a prompt, never a status
    enhanced = _BY_CODE.get(code, f"{code[0]}.0.0")
    if code == "500" and text.endswith("not recognized"):
        enhanced = "5.5.1"  # unknown command, not bad syntax
    text = text.removeprefix("Error: ")
    return f"{code}{sep}{enhanced} {text}" if text else f"{code}{sep}{enhanced}"
