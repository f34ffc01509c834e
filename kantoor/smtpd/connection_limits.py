"""How many SMTP connections one client address may hold open at once (per server process).

Each open SMTP session holds a socket and a file descriptor for up to ``limits.smtp_timeout_seconds``
per command, so one client that opens connections and stays silent could take every descriptor
the process has and lock everyone else out. Postfix limits this per client (its
``smtpd_client_connection_count_limit``, 50 by default); here ``limits.smtp_connections_per_ip``
(50) counts the MX, submission and submissions sessions of one address together, and the
connection over it is answered ``421 4.7.0`` and closed at once (RFC 5321 section 3.8: a server
may refuse a session with 421 in place of its greeting). IPv6 clients are counted per /64, as one
host usually owns a whole /64 and could otherwise take a new address per connection. The count
is per server process (``server.processes``), kept on the event loop's thread only.
"""

from __future__ import annotations

import ipaddress


def client_key(ip: str) -> str:
    """What connections are counted by: the IPv4 address, or the IPv6 /64 (an IPv4-mapped one as IPv4)."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip  # not an IP address (a UNIX socket in a test): counted as given
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ConnectionCounter:
    """Open connections per client key, and the most one key may have."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._open: dict[str, int] = {}

    def admit(self, ip: str) -> str | None:
        """Count a new connection from ``ip`` and return its key, or None (not counted) if it is one too many."""
        key = client_key(ip)
        count = self._open.get(key, 0)
        if count >= self.per_client:
            return None
        self._open[key] = count + 1
        return key

    def release(self, key: str) -> None:
        """A connection :meth:`admit` counted has ended."""
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)

    def open_from(self, ip: str) -> int:
        return self._open.get(client_key(ip), 0)


__all__ = ["ConnectionCounter", "client_key"]
