"""Content-addressed blob files: write temp → fsync → rename, named by SHA-256 (the directories fsync'ed
when one is created).

Files are immutable; the ``blobs`` table counts references from items in the
same transaction as the item row. A file whose transaction failed has no row
(or a zero count) and is removed by :meth:`BlobStore.collect_garbage` once it is
older than a grace period, so an in-flight write is never collected.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024
# A large blob's pages are sent to the disk every this many bytes while the rest still
# arrives, so the fsync at the end waits for the last few MiB only, not for the whole
# file (50 MiB: ~33 ms of a ~250 ms upload here, bench/webdav.py).
WRITEBACK_STEP = 8 * 1024 * 1024


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


class BlobTooLarge(Exception):
    """The stream went past the caller's size limit; nothing was kept."""


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._root_text = str(self.root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def write(self, data: bytes | BinaryIO | Iterable[bytes], max_size: int | None = None) -> StoredBlob:
        """Store ``data`` durably and return its address; streams in 1 MiB chunks."""
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="in-")
        try:
            with os.fdopen(fd, "wb") as out:
                flushed = 0  # bytes handed to the kernel's writeback so far
                for chunk in _chunks(data):
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise BlobTooLarge(f"more than {max_size} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                    if size - flushed >= WRITEBACK_STEP:
                        out.flush()
                        _start_writeback(fd, flushed, size - flushed)
                        flushed = size
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            final = self.path(sha)
            created = not final.parent.is_dir()
            if created:
                final.parent.mkdir(parents=True, exist_ok=True)
            # Same name means same bytes, so replacing an existing file is harmless,
            # and it refreshes the mtime that protects the file from a concurrent GC.
            os.replace(tmp_name, final)
            if created:
                # A new fan-out directory is synced (as every directory was before); in an existing one
                # the rename of a file already fsync'ed is left to the filesystem's journal: one fsync
                # per blob instead of two, and a delivery's cost is mostly fsyncs.
                _fsync_dir(final.parent)
            return StoredBlob(sha, size)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise

    def _file(self, sha256: str) -> str:
        # A plain string path for the read side: building a pathlib.Path was half the cost of reading a
        # small message's blob (IMAP FETCH of 100 bodies: 55-64 µs vs 28 µs per file).
        return os.path.join(self._root_text, sha256[:2], sha256[2:4], sha256)

    def open(self, sha256: str) -> BinaryIO:
        return open(self._file(sha256), "rb")

    def read(self, sha256: str) -> bytes:
        """A whole blob file in four system calls (open, fstat, read, close). ``open(…).read()`` made eight (an
        isatty ioctl, lseeks, a second fstat and read), each of which hands the GIL to another thread and back
        while eight IMAP sessions FETCH bodies."""
        fd = os.open(self._file(sha256), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, size + 1)  # one byte more: getting ``size`` bytes means the end was reached
            if len(data) != size:  # a short read, or a file that grew (never expected): read on to its end
                rest = [data]
                while chunk := os.read(fd, 1 << 20):
                    rest.append(chunk)
                data = b"".join(rest)
            return data
        finally:
            os.close(fd)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def unlink_if_older(self, sha256: str, grace_seconds: float) -> bool:
        path = self.path(sha256)
        try:
            if time.time() - path.stat().st_mtime < grace_seconds:
                return False
            path.unlink()
            return True
        except FileNotFoundError:
            return False

    def all_files(self) -> Iterator[tuple[str, float]]:
        """Every stored blob as (sha256, mtime), plus stale temp files as ("tmp/…", mtime)."""
        for entry in self.root.glob("??/??/*"):
            try:
                yield entry.name, entry.stat().st_mtime
            except FileNotFoundError:
                continue

    def remove_stale_temp(self, grace_seconds: float) -> int:
        removed = 0
        for entry in self.tmp.iterdir():
            try:
                if time.time() - entry.stat().st_mtime >= grace_seconds:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _chunks(data: bytes | BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield bytes(data)
        return
    read = getattr(data, "read", None)
    if read is not None:
        while True:
            chunk = read(CHUNK)
            if not chunk:
                return
            yield chunk
        return
    for chunk in data:  # type: ignore[union-attr]
        if chunk:
            yield chunk


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start (not wait for) the writeback of a range of ``fd``; durability still comes from fsync.

    On Linux, POSIX_FADV_DONTNEED starts asynchronous writeback of the range's dirty pages
    (and drops only pages already clean, so what was just written stays cached). Elsewhere
    this does nothing.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None and sys.platform.startswith("linux"):
        try:
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass  # only a hint


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
