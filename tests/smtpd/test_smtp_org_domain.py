"""DMARC organizational domains (RFC 7489 section 3.2) from the once-per-process public suffix list:
the same answers as authheaders' own per-call lookup, and authheaders' DMARC code really uses it."""

from __future__ import annotations

import importlib.resources
from concurrent.futures import ThreadPoolExecutor

import pytest

DOMAINS = [
    "example.com", "mail.example.com", "a.b.c.example.org", "EXAMPLE.COM", ".example.com.",
    "mail.example.co.uk", "co.uk", "com", "localhost", "sender.test", "news.sender.test",
    "www.city.kawasaki.jp", "x.kawasaki.jp",  # a wildcard rule and its exception
    "foo.bar.s3.amazonaws.com", "x.blogspot.com",  # private-section suffixes
    "bücher.example.de", "xn--bcher-kva.example.de", "www.ck", "a.b.ck",
]


def _authheaders_answer(domain: str) -> str | None:
    """What unpatched authheaders computes: the list read and built for this one call."""
    from authheaders.dmarc_lookup import get_org_domain_from_suffix_list

    ref = importlib.resources.files("authheaders") / "public_suffix_list.txt"
    with importlib.resources.as_file(ref) as location:
        return get_org_domain_from_suffix_list(location, domain)


@pytest.mark.parametrize("domain", DOMAINS)
def test_org_domain_matches_authheaders_rfc7489_section_3_2(domain: str) -> None:
    from kantoor.smtpd.org_domain import org_domain

    assert org_domain(domain) == _authheaders_answer(domain)


def test_authheaders_dmarc_uses_the_shared_list_rfc7489_section_6_6_3() -> None:
    import authheaders
    import authheaders.dmarc_lookup

    import kantoor.smtpd.authresults  # noqa: F401  (installs the lookup at import)
    from kantoor.smtpd.org_domain import org_domain

    assert authheaders.dmarc_lookup.get_org_domain is org_domain  # policy discovery (receiver_record)
    assert authheaders.get_org_domain is org_domain  # relaxed alignment (dmarc_per_from)


def test_concurrent_first_use_gives_one_answer_rfc7489_section_3_2() -> None:
    """Several MX sessions check their first messages at once: every thread gets the same answers."""
    from kantoor.smtpd import org_domain as module

    module._list = None  # as at start-up: the threads race to build it
    module.org_domain.cache_clear()
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(module.org_domain, DOMAINS * 4))
    assert answers == [_authheaders_answer(d) for d in DOMAINS] * 4
