"""Who are you and what may you do: credentials, throttling, the ACL engine."""

from kantoor.auth.acl import AccessControl
from kantoor.auth.credentials import Authenticator, LoginResult
from kantoor.auth.passwords import (
    WeakPassword,
    check_password_strength,
    generate_password,
    hash_password,
    verify_password,
)
from kantoor.auth.rights import RIGHTS

__all__ = [
    "AccessControl", "Authenticator", "LoginResult", "RIGHTS", "WeakPassword",
    "check_password_strength", "generate_password", "hash_password", "verify_password",
]
