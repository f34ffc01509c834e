"""Usage read-out and blob garbage collection."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select

from kantoor.storage.models import (
    Blob,
    Usage,
    utcnow,
)
from kantoor.storage.transactions import StoreBase


class UpkeepMixin(StoreBase):
    # ------------------------------------------------------------------ usage and blobs
    def usage(self, owner_id: int) -> dict[str, int]:
        with self.read() as s:
            return {u.tool: int(u.bytes) for u in s.scalars(select(Usage).where(Usage.owner_id == owner_id))}

    def collect_garbage(self, grace_seconds: float = 3600.0) -> int:
        """Remove blob files no item references; returns how many files went."""
        removed = 0
        with self.write() as s:
            cutoff = utcnow() - dt.timedelta(seconds=grace_seconds)
            dead = list(s.scalars(select(Blob.sha256).where(Blob.refcount <= 0, Blob.updated_at <= cutoff)))
            if dead:
                s.execute(delete(Blob).where(Blob.sha256.in_(dead), Blob.refcount <= 0))
        for sha in dead:
            removed += self.blobs.unlink_if_older(sha, grace_seconds)
        with self.read() as s:
            known = set(s.scalars(select(Blob.sha256)))
        for sha, _mtime in list(self.blobs.all_files()):
            if sha not in known and self.blobs.unlink_if_older(sha, grace_seconds):
                removed += 1
        self.blobs.remove_stale_temp(grace_seconds)
        return removed

