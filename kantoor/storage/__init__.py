"""Storage core: models, migrations, blob store, change feed and the one Store API."""

from kantoor.storage.blobs import BlobStore, BlobTooLarge
from kantoor.storage.database import make_engine, upgrade
from kantoor.storage.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
    SendingLimitReached,
    StorageError,
)
from kantoor.storage.notify import ChangeEvent, Notifier, PgListener, SiblingBus
from kantoor.storage.store import DROP_FOLDER, TOOL_OF_KIND, AccessPolicy, QuotaPolicy, Store

__all__ = [
    "AccessPolicy", "AlreadyExists", "BlobStore", "BlobTooLarge", "ChangeEvent", "DROP_FOLDER",
    "NotFound", "Notifier", "PermissionDenied", "PgListener", "PreconditionFailed", "QuotaExceeded",
    "QuotaPolicy", "SendingLimitReached", "SiblingBus", "StorageError", "Store", "TOOL_OF_KIND",
    "make_engine", "upgrade",
]
