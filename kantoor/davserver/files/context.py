"""What every part of the drive app shares: the core services and the request's account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kantoor.auth import Authenticator
from kantoor.config import Settings
from kantoor.quota import QuotaEngine
from kantoor.storage import Store
from kantoor.storage.models import Account

if TYPE_CHECKING:
    from kantoor.davserver.files.authentication import RecentLogins

# environ key under which the domain controller leaves the authenticated account.
ACCOUNT_KEY = "kantoor.account"


@dataclass
class DriveContext:
    settings: Settings
    store: Store
    authenticator: Authenticator
    quota: QuotaEngine
    # Authorization headers checked in full lately: shared by wsgidav's authenticator and the
    # direct answers to plain reads (kantoor.davserver.files.direct_read).
    recent_logins: RecentLogins | None = None
    # wsgidav's configuration once the app is built (its default_charset goes into guessed content types).
    dav_config: dict[str, Any] | None = None

    def guess_environ(self) -> dict[str, Any]:
        """The part of a WSGI environ a content-type guess reads (see resources.guessed_content_type)."""
        return {"wsgidav.config": self.dav_config}


def request_account(environ: dict) -> Account | None:
    """The account authenticated for this request (None before authentication)."""
    return environ.get(ACCOUNT_KEY)
