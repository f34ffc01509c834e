"""Password hashing (argon2id) and the weak-password rules of PRODUCT.md."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id with the library's current recommended cost

# A hash to verify against when the login is unknown, so a miss costs the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

# The most common passwords; anything here (case-insensitive) is refused.
COMMON_PASSWORDS = frozenset("""
123456 123456789 12345678 password qwerty123 qwerty 1234567890 1234567 111111 123123 abc123
password1 iloveyou 000000 admin welcome letmein monkey dragon sunshine princess football
baseball master shadow superman trustno1 passw0rd p@ssw0rd changeme secret administrator
welkom01 wachtwoord geheim 1q2w3e4r qwertyuiop azerty
""".split())

MIN_LENGTH = 10
MAX_LENGTH = 1024  # passphrases are welcome; this only bounds hashing work


class WeakPassword(ValueError):
    """The password breaks one of the rules; the message says which."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True if ``password`` matches; always costs one argon2 verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_strength(password: str, login: str = "", names: tuple[str, ...] = ()) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"use at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"use at most {MAX_LENGTH} characters")
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(lowered)) < 4:
        raise WeakPassword("this password is too common or too simple")
    local = login.split("@", 1)[0].lower()
    for part in (local, *[n.lower() for n in names]):
        if len(part) >= 3 and part in lowered:
            raise WeakPassword("the password must not contain your name or login")


def generate_password() -> str:
    """A one-time password for new or reset accounts (about 120 bits)."""
    return secrets.token_urlsafe(15)
