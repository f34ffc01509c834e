"""Opening the core: settings → engine, migrations, blob store, Store with its policies.

The CLI and the server both start here, so there is exactly one way the Store is
assembled with the ACL engine and the quota engine plugged in.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from kantoor.auth import AccessControl, Authenticator
from kantoor.config import Settings
from kantoor.quota import QuotaEngine
from kantoor.storage import BlobStore, Notifier, PgListener, SiblingBus, Store, make_engine, upgrade


@dataclass
class Core:
    settings: Settings
    engine: Engine
    store: Store
    acl: AccessControl
    quota: QuotaEngine
    authenticator: Authenticator
    pg_listener: PgListener | None = None
    sibling_bus: SiblingBus | None = None

    def start_cross_process_notifications(self) -> None:
        """Hear other server processes' changes: PostgreSQL LISTEN, or on SQLite the data directory's sibling bus."""
        if self.engine.dialect.name == "postgresql" and self.pg_listener is None:
            url = self.engine.url.set(drivername="postgresql")
            self.pg_listener = PgListener(url.render_as_string(hide_password=False), self.store.notifier)
            self.pg_listener.start()
        elif self.sibling_bus is not None and not self.sibling_bus.listening:
            self.sibling_bus.start()

    def close(self) -> None:
        if self.sibling_bus is not None:
            self.sibling_bus.stop()
            self.sibling_bus = None
        if self.pg_listener is not None:
            self.pg_listener.stop()
            self.pg_listener = None
        self.engine.dispose()


def open_core(settings: Settings, migrate: bool = True) -> Core:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    acl = AccessControl()
    quota = QuotaEngine(settings)
    store = Store(engine, BlobStore(settings.blob_dir), Notifier(), access=acl, quota=quota)
    sibling_bus = None
    if engine.dialect.name == "sqlite" and SiblingBus.supported():
        # Every process on this database tells the server processes of its writes
        # (on PostgreSQL the Store's pg_notify does, whoever writes).
        sibling_bus = SiblingBus(settings.data_dir / "run" / "siblings", store.notifier)
        sibling_bus.attach()
    if migrate:
        quota.sync_catalogue(store)
    return Core(settings, engine, store, acl, quota, Authenticator(store, settings), sibling_bus=sibling_bus)
