"""A loopback DNS server that answers every query at once with NXDOMAIN.

Kantoor's MX runs SPF, DKIM and DMARC checks (DNS lookups) on every inbound message.
Pointing it at this server makes those lookups cost what a warm local resolver costs
(one loopback round trip each) on any machine, instead of depending on the host's
resolver or the internet; the sender domains of the benchmark corpus end in
``.example`` (RFC 2606), which do not exist anyway. Its answers carry no SOA, so a caching
resolver keeps them for its default negative TTL (dnspython: 300 s), as it would keep a real
domain's records for their TTL; ``queries`` counts what still reached this server.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode

HOST = "127.0.0.1"


class NullDns:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.5)  # lets the thread notice stop()
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:  # not DNS: ignore, as a resolver would
                continue
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.flags |= dns.flags.RA
            self.queries += 1
            self.sock.sendto(response.to_wire(), peer)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()
