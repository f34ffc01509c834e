"""The MX checks' resolver (kantoor.smtpd.answer_cache): an answer is reused for exactly as long as its
TTL allows (RFC 1035 section 3.2.1), a name that does not exist for as long as dnspython keeps the
negative answer (RFC 2308), and every NXDOMAIN raised is a new exception."""

from __future__ import annotations

import time
from typing import Any

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest

from kantoor.smtpd.answer_cache import CachingResolver


def _resolver(zone: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[CachingResolver, list[str]]:
    asked: list[str] = []
    answer = zone.answer

    def counting(wire: bytes) -> bytes | None:
        asked.append(dns.message.from_wire(wire).question[0].name.to_text())
        return answer(wire)

    monkeypatch.setattr(zone, "answer", counting)
    resolver = CachingResolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.nameserver_ports = {"127.0.0.1": zone.port}
    resolver.cache = dns.resolver.LRUCache(100)
    return resolver, asked


def test_answer_is_reused_until_its_ttl_runs_out_rfc1035_section_3_2_1(zone: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    zone.add("cached.test", "TXT", '"v=spf1 -all"')  # the fake zone's TTL: 60 s
    resolver, asked = _resolver(zone, monkeypatch)
    first = resolver.resolve("cached.test.", "TXT")
    second = resolver.resolve("cached.test.", "TXT")
    assert [r.to_text() for r in second] == [r.to_text() for r in first] == ['"v=spf1 -all"']
    assert asked == ["cached.test."]
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    resolver.resolve("cached.test.", "TXT")
    assert asked == ["cached.test.", "cached.test."]


def test_nxdomain_is_reused_while_dnspython_keeps_it_and_raised_anew_rfc2308(zone: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    resolver, asked = _resolver(zone, monkeypatch)
    errors = []
    for _ in range(2):
        with pytest.raises(dns.resolver.NXDOMAIN) as caught:
            resolver.resolve("_dmarc.nowhere.test.", "TXT")
        errors.append(caught.value)
    assert asked == ["_dmarc.nowhere.test."]
    assert errors[0] is not errors[1] and errors[1].qnames() == errors[0].qnames()
    # The one raised from the kept answer is what dnspython raised: same message, arguments and details.
    assert (str(errors[1]), errors[1].args, errors[1].kwargs) == (str(errors[0]), errors[0].args, errors[0].kwargs)
    expires = resolver.cache.get((dns.name.from_text("_dmarc.nowhere.test."), dns.rdatatype.ANY,
                                  dns.rdataclass.IN)).expiration
    monkeypatch.setattr(time, "time", lambda: expires + 1)
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("_dmarc.nowhere.test.", "TXT")
    assert asked == ["_dmarc.nowhere.test.", "_dmarc.nowhere.test."]


def test_empty_answer_and_server_failure_are_asked_again(zone: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    zone.add("only-a.test", "A", "192.0.2.1")
    zone.servfail.add("broken.test")
    resolver, asked = _resolver(zone, monkeypatch)
    resolver.lifetime = 2.0
    for _ in range(2):
        assert resolver.resolve("only-a.test.", "TXT", raise_on_no_answer=False).rrset is None
        with pytest.raises(dns.resolver.NoNameservers):
            resolver.resolve("broken.test.", "TXT")
    # dnspython itself keeps the empty answer (its TTL); a server failure is never kept.
    assert asked.count("broken.test.") == 2
    assert asked.count("only-a.test.") == 1
