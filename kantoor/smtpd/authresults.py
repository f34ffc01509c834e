"""Authentication-Results (RFC 8601) for mail arriving at the MX: SPF, DKIM and DMARC.

The checks are authheaders' (SPF by pyspf, DKIM by dkimpy, DMARC policy with the
public suffix list, loaded once per process by :mod:`kantoor.smtpd.org_domain`), all
resolving through dnspython's default resolver — which
:func:`use_name_servers` points at the configured name servers (a test's fake zone).
A header with our own authserv-id that arrives with the message is a forgery
(RFC 8601 section 5) and is removed. Runs in a worker thread: DNS lookups block.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import dkim
import dns.exception
import dns.resolver

from kantoor.smtpd import check_memo, org_domain
from kantoor.smtpd.answer_cache import CachingResolver
from kantoor.smtpd.header_completion import header_end
from kantoor.smtpd.outbound_settings import DeliverySettings, host_port
from kantoor.smtpd.trace import header_safe

log = logging.getLogger("kantoor.smtpd")

_FIELD = re.compile(rb"Authentication-Results[ \t]*:", re.IGNORECASE)

# The one place authheaders is patched: its org-domain lookup re-read the public suffix
# list on every call (see org_domain.py), and its SPF check and DMARC record look-up keep
# their results as long as the DNS answers they read (check_memo.py). Done at import,
# before any message is checked.
org_domain.install()
check_memo.install()


# Answers the checks' resolver keeps (dnspython's LRU cache honours each record's TTL, and the SOA
# minimum of a negative answer, RFC 2308): mail from one domain arrives in bursts, and authheaders
# asks for the same _dmarc record twice per message. The cache lives on the resolver, so pointing the
# checks at other name servers (a test's fake zone) starts with an empty one.
DNS_CACHE_ENTRIES = 10_000


def use_name_servers(delivery: DeliverySettings) -> None:
    """Make dnspython's default resolver (used by pyspf, dkimpy, authheaders) ask the configured servers,
    through a TTL-respecting cache (and :mod:`kantoor.smtpd.answer_cache`'s quick way to its answers)."""
    if not delivery.dns_nameservers.strip():
        current = dns.resolver.default_resolver
        if isinstance(current, CachingResolver) and current.cache is not None:
            return  # already set up from the system's configuration
        try:
            resolver = CachingResolver()  # the system's configuration, as dnspython's default resolver reads it
        except dns.resolver.NoResolverConfiguration:  # no resolv.conf: the checks will say "temperror"
            return
    else:
        resolver = CachingResolver(configure=False)
        servers = [host_port(s, 53) for s in delivery.dns_nameservers.split(",") if s.strip()]
        resolver.nameservers = [host for host, _ in servers]
        resolver.nameserver_ports = {host: port for host, port in servers}
        resolver.lifetime = 10.0
    resolver.cache = dns.resolver.LRUCache(DNS_CACHE_ENTRIES)
    dns.resolver.default_resolver = resolver
    check_memo.forget()  # results computed from the other resolver's answers


def strip_forged(message: bytes, authserv_id: str) -> bytes:
    """``message`` without the Authentication-Results fields that claim to be ours (RFC 8601 section 5: a
    receiver removes them, or its users would trust what a sender wrote). A field is read as a parser would:
    folded, with a comment before the id, the id quoted, blanks before the colon (RFC 5322 section 4.5)."""
    end = header_end(message)
    if not message[:end].endswith(b"\r\n"):  # a header-only message without a final line end: whole lines only
        end = message.rfind(b"\r\n", 0, end) + 2
    head = message[:end]
    if b"authentication-results" not in head.lower():
        return message  # nothing to remove: no copy of the whole message
    ours = authserv_id.lower()
    kept: list[bytes] = []
    field: list[bytes] = []
    for line in head.split(b"\r\n")[:-1]:  # the last piece is what follows the final CRLF: b""
        if line[:1] in (b" ", b"\t") and field:  # a folded continuation belongs to the field before it
            field.append(line)
            continue
        if field and not _claims(field, ours):
            kept += field
        field = [line]
    if field and not _claims(field, ours):
        kept += field
    return b"".join(line + b"\r\n" for line in kept) + message[end:]


def _claims(field: list[bytes], ours: str) -> bool:
    """Is this header field (its lines) an Authentication-Results field whose authserv-id is ``ours``?"""
    match = _FIELD.match(field[0])
    if match is None:
        return False
    value = (field[0][match.end():] + b"".join(field[1:])).decode("utf-8", "replace")
    return _authserv_id(value).rstrip(".") == ours.rstrip(".")  # "localhost." names the same host


def _authserv_id(value: str) -> str:
    """The authserv-id at the start of an Authentication-Results value (RFC 8601 section 2.2), lower case: after
    any comments and blanks (CFWS), a token or a quoted string."""
    i, depth = 0, 0
    while i < len(value):  # CFWS: blanks and (nested) comments
        char = value[i]
        if char == "\\" and depth:
            i += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth and char not in " \t":
            break
        i += 1
    if value[i:i + 1] == '"':
        quoted = re.match(r'"((?:[^"\\]|\\.)*)"', value[i:])
        return re.sub(r"\\(.)", r"\1", quoted.group(1)).lower() if quoted else ""
    token = re.match(r'[^\s;()"]+', value[i:])
    return token.group(0).lower() if token else ""


def authentication_results(message: bytes, *, authserv_id: str, ip: str, mail_from: str, helo: str) -> bytes:
    """The ``Authentication-Results:`` field (CRLF-terminated) for a message received from ``ip``."""
    sender = "" if mail_from in ("", "<>") else mail_from
    try:
        read, signed = _what_the_checks_read(message)
        field = _checked(read, signed, authserv_id, ip=ip, mail_from=sender or f"postmaster@{helo}", helo=helo)
    except Exception as exc:  # a message or a DNS answer the checks cannot digest: say so, still deliver
        log.info("authentication checks failed: %s", exc.__class__.__name__)
        field = f"Authentication-Results: {header_safe(authserv_id)}; none (checks failed: temporary error)"
    # One line per result, folded, never a bare LF (the library joins with "\n" or spaces).
    field = re.sub(r"\r?\n", "\r\n", field.strip())
    return field.encode("utf-8", "replace") + b"\r\n"


def _checked(message: bytes, signed: bool, authserv_id: str, *, ip: str, mail_from: str, helo: str) -> str:
    """authheaders' SPF and DMARC checks, with a DKIM result per signature (RFC 8601 section 2.7.1).

    ``authheaders.authenticate_message`` verifies only a message's first DKIM-Signature, and calls an unsigned
    message's DKIM "fail" (dkimpy's verify() is False when there is nothing to verify) where RFC 8601 says
    "none". Here an unsigned message gets ``dkim=none`` without building a verifier at all, a signed one a
    result for each of its signatures (a message re-signed by a mailing list or a provider often carries two),
    and DMARC passes when any aligned signature does (RFC 7489 section 4.2), as it asks each passing one."""
    from authheaders import check_dmarc, check_spf
    from authres import AuthenticationResultsHeader
    from authres.dmarc import DMARCAuthenticationResult

    spf_result = check_spf(ip, mail_from, helo)
    dkim_results = _dkim_results(message) if signed else [_unsigned()]
    candidates = [r for r in dkim_results if r.result == "pass"] or dkim_results[:1]
    for dkim_result in candidates:
        try:
            dmarc_result = check_dmarc(message, spf_result, dkim_result)
        except Exception:  # noqa: BLE001 - e.g. no From: field (authheaders fails on it); SPF and DKIM stand
            # RFC 7489 section 6.6.1: DMARC needs exactly one From domain; without it the policy cannot be
            # evaluated, a permanent error of this message (RFC 8601 section 2.7.x: dmarc=permerror).
            dmarc_result = DMARCAuthenticationResult(result="permerror")
            break
        if dmarc_result.result == "pass":
            break
    return str(AuthenticationResultsHeader(authserv_id=authserv_id, results=[spf_result, *dkim_results, dmarc_result]))


# Signatures verified per message, at most (RFC 6376 section 6.1 lets a verifier limit them): each costs an RSA
# verification and a DNS look-up, and a message could carry hundreds. The first ones are those added last,
# by the hops nearest to us.
MAX_SIGNATURES = 5


def _dkim_results(message: bytes) -> list[Any]:
    """One ``dkim=`` result per DKIM-Signature field of ``message`` (verified by dkimpy; the first
    MAX_SIGNATURES), or ``dkim=none``."""
    from authres import DKIMAuthenticationResult

    verifier = dkim.DKIM(message)
    count = sum(1 for name, _value in verifier.headers if name.lower() == b"dkim-signature")
    if not count:  # what looked like one is not a field dkimpy reads as a signature
        return [_unsigned()]
    results = []
    for index in range(min(count, MAX_SIGNATURES)):
        verifier.signature_fields = {}
        try:
            result = "pass" if verifier.verify(idx=index) else "fail"
        except dns.exception.DNSException:
            result = "temperror"
        except Exception:  # noqa: BLE001 - a signature dkimpy cannot read or check is a failed one, as authheaders says
            result = "fail"
        fields = verifier.signature_fields or {}
        results.append(DKIMAuthenticationResult(result=result,
                                                header_d=fields.get(b"d", b"").decode("ascii", "replace"),
                                                header_i=fields.get(b"i", b"").decode("ascii", "replace")))
    return results


def _unsigned() -> Any:
    from authres import DKIMAuthenticationResult

    return DKIMAuthenticationResult(result="none")  # RFC 8601 section 2.7.1: the message was not signed


def _what_the_checks_read(message: bytes) -> tuple[bytes, bool]:
    """The part of ``message`` the checks need, and whether it may carry a DKIM signature. Only a signature's
    body hash reads the body; without one, DKIM has nothing to verify and DMARC reads only From, yet dkimpy
    and authheaders each split the whole message into lines — twice the body's size of work for nothing.
    So an unsigned message is checked on its header block alone (same fields, same results)."""
    end = message.find(b"\r\n\r\n")  # not partition(): that would copy the body only to drop it
    if end < 0 or message.startswith(b"\r\n") or b"dkim-signature" in message[:end].lower():
        return message, True  # _dkim_results finds out whether a signature field is really there
    return message[:end + 4], False
