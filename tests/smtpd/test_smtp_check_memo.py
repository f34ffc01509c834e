"""The MX's SPF results and DMARC records kept between messages (kantoor.smtpd.check_memo): never longer than the
DNS answers they were computed from (RFC 1035 section 3.2.1: an answer is good for its TTL; RFC 7208 section 4.4,
RFC 7489 section 6.6.3: the checks read DNS), and never when an answer could not be kept (RFC 7208 section 2.6.6:
a temporary error must not stick)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from kantoor.smtpd.authresults import authentication_results, use_name_servers
from kantoor.smtpd.outbound_settings import DeliverySettings


@pytest.fixture
def checks(zone: Any) -> Iterator[Any]:
    import dns.resolver

    before = dns.resolver.default_resolver
    use_name_servers(DeliverySettings(dns_nameservers=f"127.0.0.1:{zone.port}"))

    def check(domain: str) -> str:
        message = f"From: someone@{domain}\r\nSubject: memo\r\n\r\nHello\r\n".encode()
        return authentication_results(message, authserv_id="mx.test", ip="192.0.2.10",
                                      mail_from=f"someone@{domain}", helo="client.test").decode()
    yield check
    dns.resolver.default_resolver = before


def test_spf_result_is_reused_until_the_policy_answer_expires_then_read_anew(zone: Any, checks: Any,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    zone.add("memo-ttl.test", "TXT", '"v=spf1 ip4:192.0.2.10 -all"')  # the fake zone's TTL: 60 s
    assert "spf=pass" in checks("memo-ttl.test")
    zone.records[("memo-ttl.test.", "TXT")] = ['"v=spf1 -all"']  # the domain changes its policy
    assert "spf=pass" in checks("memo-ttl.test")  # the old answer is still good for its TTL
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert "spf=fail" in checks("memo-ttl.test")  # read anew once the answer expired


def test_a_result_from_a_failed_lookup_is_not_kept(zone: Any, checks: Any) -> None:
    zone.servfail.add("memo-fail.test")
    assert "spf=temperror" in checks("memo-fail.test")
    zone.servfail.discard("memo-fail.test")
    zone.add("memo-fail.test", "TXT", '"v=spf1 ip4:192.0.2.10 -all"')
    assert "spf=pass" in checks("memo-fail.test")  # at once: nothing was kept from the failure


def test_dmarc_record_is_reused_until_its_answer_expires(zone: Any, checks: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import authheaders

    zone.add("_dmarc.memo-dmarc.test", "TXT", '"v=DMARC1; p=none"')
    record, _ = authheaders.receiver_record("memo-dmarc.test")  # as dmarc_per_from looks it up
    assert record["p"] == "none"
    record["p"] = "changed by a caller"  # what a caller does to its copy stays there
    zone.records[("_dmarc.memo-dmarc.test.", "TXT")] = ['"v=DMARC1; p=quarantine"']
    assert authheaders.receiver_record("memo-dmarc.test")[0]["p"] == "none"
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert authheaders.receiver_record("memo-dmarc.test")[0]["p"] == "quarantine"


def test_every_message_gets_the_same_field_as_the_first_from_that_sender(zone: Any, checks: Any) -> None:
    # DMARC alignment rewrites the SPF result object authheaders hands it: a kept object would be shared.
    zone.add("memo-same.test", "TXT", '"v=spf1 ip4:192.0.2.10 -all"')
    zone.add("_dmarc.memo-same.test", "TXT", '"v=DMARC1; p=reject"')
    first = checks("memo-same.test")
    assert "smtp.mailfrom=someone@memo-same.test" in first
    assert [checks("memo-same.test") for _ in range(3)] == [first] * 3
