"""What every part of the drive app shares: the core services and the request's account."""

from __future__ import annotations

from dataclasses import dataclass

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.quota import QuotaEngine
from kantoor.storage import Store
from kantoor.storage.models import Account

# environ key under which the domain controller leaves the authenticated account.
ACCOUNT_KEY = "kantoor.account"


@dataclass
class DriveContext:
    settings: Settings
    store: Store
    authenticator: Authenticator
    quota: QuotaEngine


def request_account(environ: dict) -> Account | None:
    """The account authenticated for this request (None before authentication)."""
    return environ.get(ACCOUNT_KEY)
