"""The one Store API: every frontend reads and writes through it.

Every write is one database transaction that (1) asks the access policy for the
right, (2) reserves quota through the quota policy, (3) writes blob + rows,
(4) appends to the change log and bumps the collection's modseq, and (5) after
commit publishes the change to listeners. A failure anywhere rolls the whole
transaction back: no row, no counted usage; a blob file written before the
failure has no reference and is collected by :meth:`Store.collect_garbage`.

The policies are plugged in by the application (``kantoor.core``) because the
ACL engine (``auth``) and the quota engine (``quota``) sit above storage.
All methods block: call them from worker threads, never on the event loop.

The API is one class assembled from one module per subject (``accounts``,
``groups``, ``containers``, ``items``, ``mail``, ``grants``, ``drive``,
``properties``, ``upkeep``) on the shared write path in ``transactions``.
"""

from __future__ import annotations

from kantoor.storage.accounts import AccountsMixin
from kantoor.storage.calendars import CalendarsMixin
from kantoor.storage.containers import ContainersMixin
from kantoor.storage.drive import DriveMixin
from kantoor.storage.grants import GrantsMixin
from kantoor.storage.groups import GroupsMixin
from kantoor.storage.imap_state import ImapStateMixin
from kantoor.storage.items import ItemsMixin
from kantoor.storage.locks import LocksMixin
from kantoor.storage.mail import MailMixin
from kantoor.storage.names import (
    DEFAULT_MAILBOXES,
    DROP_FOLDER,
    TOOL_OF_KIND,
    normalize_address,
    normalize_flags,
    validate_item_name,
)
from kantoor.storage.outbound import OutboundMixin
from kantoor.storage.policies import AccessPolicy, QuotaPolicy
from kantoor.storage.properties import PropertiesMixin
from kantoor.storage.shared_calendars import SharedCalendarsMixin
from kantoor.storage.upkeep import UpkeepMixin


class Store(AccountsMixin, GroupsMixin, ContainersMixin, ItemsMixin, MailMixin, GrantsMixin, DriveMixin,
            PropertiesMixin, CalendarsMixin, SharedCalendarsMixin, UpkeepMixin, OutboundMixin,
            LocksMixin, ImapStateMixin):
    """Accounts, groups, collections, items, messages, grants and blobs, on one write path."""


__all__ = [
    "AccessPolicy", "DEFAULT_MAILBOXES", "DROP_FOLDER", "QuotaPolicy", "Store", "TOOL_OF_KIND",
    "normalize_address", "normalize_flags", "validate_item_name",
]
