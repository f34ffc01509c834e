"""Where mail for a domain goes: the static map, else MX records via dnspython (RFC 5321 section 5.1).

MX hosts are tried in preference order, each at its addresses (A, then AAAA),
looked up with the same resolver, so a test's fake zone (or a split-horizon
name server) decides everything. No MX record means the domain itself is the
mail host (the "implicit MX"); a "null MX" (``MX 0 .``, RFC 7505) means the
domain accepts no mail at all. A domain that does not exist is a permanent
failure, and so are MX hosts none of which has an address; a name server that
fails (SERVFAIL, timeout) is a temporary one — for an MX host's address, only
that host is skipped. An address literal (``user@[192.0.2.1]``) names the host
itself: no look-up.

An MX host named like this server (``server.hostname``) is this server: section 5.1 says
to discard it and every less preferred host (those would relay the mail back here), and
when nothing more preferred is left, the mail loops — a permanent failure (5.4.6), as a
domain that names this server as its best MX without being one of its local domains is
misconfigured, here or in DNS.
"""

from __future__ import annotations

import ipaddress

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
from dns.rdtypes.ANY.MX import MX

from kantoor.smtpd.outbound_settings import DeliverySettings, host_port, static_mx_map
from kantoor.smtpd.remote import NextHop


class NoMailHost(Exception):
    """Mail for the domain cannot be delivered; ``permanent`` says whether retrying can help."""

    def __init__(self, reply: str, permanent: bool) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent


def make_resolver(delivery: DeliverySettings) -> dns.asyncresolver.Resolver:
    """The system resolver, or the name servers the settings give (e.g. a test's fake zone)."""
    if not delivery.dns_nameservers.strip():
        return dns.asyncresolver.Resolver()
    resolver = dns.asyncresolver.Resolver(configure=False)
    servers = [host_port(s, 53) for s in delivery.dns_nameservers.split(",") if s.strip()]
    resolver.nameservers = [host for host, _ in servers]
    resolver.nameserver_ports = {host: port for host, port in servers}
    return resolver


def _temporary(domain: str, exc: Exception) -> NoMailHost:
    return NoMailHost(f"451 4.4.3 DNS lookup for {domain} failed: {exc.__class__.__name__}", permanent=False)


async def _addresses(name: str, resolver: dns.asyncresolver.Resolver, lifetime: float) -> list[str]:
    """IPv4 then IPv6 addresses of ``name``; [] when it has none. Server failures propagate."""
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(name, rdtype, lifetime=lifetime)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        found += [r.to_text() for r in answer]
    return found


def _loops_back(domain: str, host: str) -> NoMailHost:
    return NoMailHost(f"554 5.4.6 Mail for {domain} loops back to this server: its best mail host is {host}, "
                      "this server's own name, but the domain is not one of its mail domains", permanent=True)


def _more_preferred_than_self(domain: str, records: list[MX], own_names: frozenset[str]) -> list[MX]:
    """``records`` without this server and every host less preferred than it (RFC 5321 section 5.1)."""
    own = [r for r in records if r.exchange.to_text(omit_final_dot=True).lower() in own_names]
    if not own:
        return records
    best = min(r.preference for r in own)
    kept = [r for r in records if r.preference < best]
    if not kept:
        raise _loops_back(domain, own[0].exchange.to_text(omit_final_dot=True))
    return kept


async def mail_hosts(domain: str, delivery: DeliverySettings,
                     resolver: dns.asyncresolver.Resolver | None = None,
                     own_names: frozenset[str] = frozenset()) -> list[NextHop]:
    """The next hops to try for ``domain``, most preferred first; ``own_names`` (lower case) are this
    server's host names."""
    domain = domain.lower().rstrip(".")
    static = static_mx_map(delivery.static_mx)
    if domain in static:
        return [NextHop(host, port, host) for host, port in static[domain]]
    port = delivery.remote_port
    if domain.startswith("["):
        return [_literal_hop(domain, port)]
    resolver = resolver or make_resolver(delivery)
    lifetime = delivery.connect_timeout_seconds
    try:
        answer = await resolver.resolve(domain, "MX", lifetime=lifetime)
        records = sorted(answer, key=lambda r: r.preference)
    except dns.resolver.NXDOMAIN:
        raise NoMailHost(f"550 5.1.2 Domain {domain} does not exist", permanent=True) from None
    except dns.resolver.NoAnswer:
        records = []
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise _temporary(domain, exc) from None
    except (dns.name.NameTooLong, dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.IDNAException):
        # A name no DNS query can carry (a symbol dnspython's IDNA 2008 codec refuses, an over-long label):
        # no retry can help.
        raise NoMailHost(f"550 5.1.2 {domain} is not a valid domain name", permanent=True) from None
    if any(r.exchange == dns.name.root for r in records):
        # RFC 7505 section 3: a null MX is the only record; a domain that publishes it takes no mail.
        raise NoMailHost(f"556 5.1.10 Domain {domain} accepts no mail (null MX, RFC 7505)", permanent=True)
    if not records and domain in own_names:
        raise _loops_back(domain, domain)  # the implicit MX is this server
    records = _more_preferred_than_self(domain, records, own_names)
    names = [r.exchange.to_text(omit_final_dot=True) for r in records] or [domain]  # implicit MX
    hops: list[NextHop] = []
    failed: Exception | None = None
    for name in names:
        # A host whose address look-up fails is skipped, not the hosts after it (as Postfix does).
        try:
            hops += [NextHop(address, port, name) for address in await _addresses(name, resolver, lifetime)]
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            failed = exc
    if not hops:
        if failed is not None:
            raise _temporary(domain, failed)
        if not records:
            raise NoMailHost(f"550 5.1.2 Domain {domain} has no mail host (no MX and no address)", permanent=True)
        # Every MX host answered for has no address (the name does not exist, or has no A/AAAA): DNS said so
        # without failing, so a retry would only hear it again (Postfix bounces it the same, 5.4.4).
        raise NoMailHost(f"550 5.4.4 The mail hosts of {domain} ({', '.join(names)}) have no address",
                         permanent=True)
    return hops


def _literal_hop(literal: str, port: int) -> NextHop:
    """The host an address literal names (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``, RFC 5321 section 4.1.3):
    mail goes straight to it, no MX look-up."""
    text = literal[1:-1] if literal.endswith("]") else literal[1:]
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise NoMailHost(f"550 5.1.2 {literal} is not a valid address literal", permanent=True) from None
    if literal[1:6].lower() != "ipv6:" and address.version == 6:
        raise NoMailHost(f"550 5.1.2 {literal}: an IPv6 literal is written [IPv6:...]", permanent=True)
    return NextHop(str(address), port, literal)
