"""Mail domain names: one canonical spelling (a host name, case-folded, A-labels for internationalized
names), refused before anything is stored, and matched in that spelling."""

from __future__ import annotations

import pytest

from kantoor.storage import AlreadyExists
from kantoor.storage.accounts import domain_name

REFUSED = [
    ("bad..name", "empty label"),
    ("ex_ample.test", "ex_ample"),
    ("a\tb.test", "a\\tb"),
    ("[127.0.0.1]", "address literal"),
    ("[IPv6:::1]", "address literal"),
    ("1.2.3.4", "IP address"),
    ("4", "IP address"),
    ("not a domain", "not a domain"),
    ("-a.test", "hyphen"),
    ("a-.test", "hyphen"),
    ("a.test..", "empty label"),
    ("", "empty label"),
    ("x" * 64 + ".test", "longer than 63"),
    (".".join(["a" * 63] * 4), "longer than 253"),
    ("xn--zz.test", "internationalized"),  # not a valid A-label
    ("a@b.test", "a@b"),
    ("a/b.test", "a/b"),
]


@pytest.mark.parametrize(("name", "reason"), REFUSED)
def test_what_is_no_host_name_is_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match="not a domain name") as caught:
        domain_name(name)
    message = str(caught.value)
    assert reason in message and "\n" not in message and "\t" not in message


@pytest.mark.parametrize(("name", "canonical"), [
    ("Example.ORG", "example.org"),
    ("example.org.", "example.org"),  # an absolute name's dot
    (" example.org ", "example.org"),
    ("localhost", "localhost"),  # the default mail_domain: single labels stay allowed
    ("123.example", "123.example"),  # numeric labels, but not the last one
    ("a-b.c-d.test", "a-b.c-d.test"),
    ("bücher.test", "xn--bcher-kva.test"),
    ("BÜCHER.Test.", "xn--bcher-kva.test"),
    ("xn--bcher-kva.test", "xn--bcher-kva.test"),
    ("XN--BCHER-KVA.TEST", "xn--bcher-kva.test"),
])
def test_a_host_name_gets_one_spelling(name: str, canonical: str) -> None:
    assert domain_name(name) == canonical


def test_add_domain_refuses_an_invalid_name_and_stores_nothing(core) -> None:  # type: ignore[no-untyped-def]
    for name, _ in REFUSED:
        with pytest.raises(ValueError, match="not a domain name"):
            core.store.add_domain(name)
    assert core.store.list_domains() == []


def test_the_u_label_and_the_a_label_are_one_domain(core) -> None:  # type: ignore[no-untyped-def]
    assert core.store.add_domain("Bücher.test.").name == "xn--bcher-kva.test"
    with pytest.raises(AlreadyExists, match="xn--bcher-kva.test exists"):
        core.store.add_domain("xn--bcher-kva.test")
    with pytest.raises(AlreadyExists):
        core.store.add_domain("bücher.test")
    assert [d.name for d in core.store.list_domains()] == ["xn--bcher-kva.test"]


def test_a_stored_a_label_matches_an_address_domain_in_either_spelling(core) -> None:  # type: ignore[no-untyped-def]
    core.store.add_domain("bücher.test")
    core.store.add_domain("Example.ORG")
    for name in ("bücher.test", "BÜCHER.test", "xn--bcher-kva.test", "example.org", "EXAMPLE.org."):
        assert core.store.is_local_domain(name), name
    # What an address may carry that is no domain name is never ours (and is no error).
    for name in ("other.test", "[127.0.0.1]", "", "ex_ample.test", "a\tb"):
        assert not core.store.is_local_domain(name), name
