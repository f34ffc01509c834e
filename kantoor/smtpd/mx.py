"""Where mail for a domain goes: the static map, else MX records via dnspython (RFC 5321 section 5.1).

No MX record means the domain itself is the mail host (the "implicit MX"); a
"null MX" (``MX 0 .``, RFC 7505) means the domain accepts no mail at all.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.resolver

from kantoor.smtpd.outbound_settings import DeliverySettings, host_port, static_mx_map

SMTP_PORT = 25


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


async def mail_hosts(domain: str, delivery: DeliverySettings,
                     resolver: dns.asyncresolver.Resolver | None = None) -> list[tuple[str, int]]:
    """The (host, port) pairs to try for ``domain``, most preferred first."""
    domain = domain.lower().rstrip(".")
    static = static_mx_map(delivery.static_mx)
    if domain in static:
        return static[domain]
    resolver = resolver or make_resolver(delivery)
    try:
        answer = await resolver.resolve(domain, "MX", lifetime=delivery.connect_timeout_seconds)
    except dns.resolver.NXDOMAIN:
        raise NoMailHost(f"550 5.1.2 Domain {domain} does not exist", permanent=True) from None
    except dns.resolver.NoAnswer:
        return [(domain, SMTP_PORT)]  # implicit MX: the domain's own address
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise NoMailHost(f"451 4.4.3 DNS lookup for {domain} failed: {exc.__class__.__name__}",
                         permanent=False) from None
    records = sorted(answer, key=lambda r: r.preference)
    hosts = [r.exchange.to_text(omit_final_dot=True) for r in records]
    if hosts in ([""], ["."]) or (len(records) == 1 and records[0].exchange == dns.name.root):
        raise NoMailHost(f"556 5.1.10 Domain {domain} accepts no mail (null MX)", permanent=True)
    return [(host, SMTP_PORT) for host in hosts if host]
