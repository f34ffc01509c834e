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
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
        """Store ``data`` durably and return its address; streams in 1 MiB chunks.

        A source with ``readinto`` (a file, a request body read straight from its socket) is read into a
        few reused buffers; any other stream chunk by chunk. From the second chunk on, each is written to
        the file in one pool thread and hashed in another while this one reads the next (:class:`_Sink`):
        reading, writing and the SHA-256 (~0.7 ms/MiB) all release the GIL, so a large upload is no longer
        received, then hashed, then written, one step after the other (bench/webdav.py: a 50 MiB PUT at
        ~0.9 × nginx's rate instead of ~0.4 ×; writing in the reading thread instead was ~0.7 ×).
        """
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="in-")
        try:
            sink = _Sink(fd)
            try:
                for chunk, release in _pieces(data):
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise BlobTooLarge(f"more than {max_size} bytes")
                    sink.put(chunk, release)
                sha = sink.finish()
                os.fsync(fd)
            finally:
                sink.close()
                os.close(fd)
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

    def read(self, sha256: str, size: int | None = None) -> bytes:
        """A whole blob file in four system calls (open, fstat, read, close), three if the caller knows its
        ``size`` (the item row's). ``open(…).read()`` made eight (an isatty ioctl, lseeks, a second fstat and
        read), each of which hands the GIL to another thread and back while eight IMAP sessions FETCH bodies
        or eight drive clients GET small files."""
        fd = os.open(self._file(sha256), os.O_RDONLY)
        try:
            if size is None:
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


# Buffers (of CHUNK bytes) a ``readinto`` source is read into: one being filled, the rest waiting to be
# or being written and hashed. What a large write holds in memory, whatever the size of the blob.
RING = 8
# Pieces of a stream smaller than this are joined up to it before they are written and hashed.
GATHER = 256 * 1024


# Threads that write and hash large blobs beside their readers, two per blob being written (so at most
# half as many such blobs at once; any more are written and hashed by their reader, as small ones are).
# They stay for the next blob (a thread per blob would cost its start, and its CPU time would vanish from
# /proc/<pid>/task, where bench/process_cpu.py reads it, when it ended).
SINK_THREADS = 32


class _SinkPool:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.threads = ThreadPoolExecutor(max_workers=SINK_THREADS, thread_name_prefix="blob-sink")
        # A blob takes two threads or none: never one of its stages waiting for a thread behind others' stages.
        self.pairs = threading.BoundedSemaphore(SINK_THREADS // 2)


_sinks: _SinkPool | None = None
_sinks_lock = threading.Lock()


def _sink_pool() -> _SinkPool:
    global _sinks
    with _sinks_lock:
        if _sinks is None or _sinks.pid != os.getpid():  # a forked child makes its own
            _sinks = _SinkPool()
        return _sinks


class _Stage:
    """One step (writing, hashing) applied to a stream's chunks in order, in a pool thread of its own."""

    def __init__(self, step: Callable[[bytes | memoryview], None], pool: ThreadPoolExecutor) -> None:
        self.step = step
        self.queue: queue.SimpleQueue[tuple[bytes | memoryview, _Done] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.running: Future[None] | None = pool.submit(self._run)

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            chunk, done = item
            if self.error is None:
                try:
                    self.step(chunk)
                except BaseException as exc:  # raised to the caller by _Sink
                    self.error = exc
            done()

    def stop(self) -> None:
        """Wait until every chunk given is through; idempotent."""
        if self.running is not None:
            self.queue.put(None)
            self.running.result()
            self.running = None


class _Done:
    """Counts the stages a chunk still has to go through; the last one frees its place (and buffer)."""

    __slots__ = ("left", "lock", "release", "room")

    def __init__(self, stages: int, release: Callable[[], None] | None, room: threading.Semaphore) -> None:
        self.left = stages
        self.lock = threading.Lock()
        self.release = release
        self.room = room

    def __call__(self) -> None:
        with self.lock:
            self.left -= 1
            last = not self.left
        if last:
            if self.release is not None:
                self.release()
            self.room.release()


class _Sink:
    """Writes a stream to a file and hashes it, chunk by chunk in order. The first chunk in the caller's thread
    (a small blob needs no other); from the second on, the hashing and the writing each run in a pool thread
    of their own (if two are free), at most RING chunks behind the caller, which only reads. A failed write
    is raised to the caller."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.digest = hashlib.sha256()
        self.written = 0
        self.flushed = 0  # bytes handed to the kernel's writeback so far
        self.room = threading.Semaphore(RING)
        self.stages: list[_Stage] = []
        self.pool: _SinkPool | None = None  # holding one of its pairs of threads
        self.chunks = 0

    def put(self, chunk: bytes | memoryview, release: Callable[[], None] | None = None) -> None:
        """Write and hash ``chunk`` after those before it; ``release`` is called once that is done (its buffer
        may be filled again)."""
        self._raise()
        self.chunks += 1
        if self.chunks == 2:
            pool = _sink_pool()
            if pool.pairs.acquire(blocking=False):
                self.pool = pool
                # Both release the GIL (sha256 for chunks over 2 KiB), and so does the caller's reading.
                self.stages = [_Stage(self.digest.update, pool.threads), _Stage(self._write, pool.threads)]
        if not self.stages:
            try:
                self._write(chunk)
                self.digest.update(chunk)
            finally:
                if release is not None:
                    release()
            return
        self.room.acquire()  # no more than RING chunks wait: memory stays bounded if a stage is the slower
        done = _Done(len(self.stages), release, self.room)
        for stage in self.stages:
            stage.queue.put((chunk, done))

    def _write(self, chunk: bytes | memoryview) -> None:
        _write_all(self.fd, chunk)
        self.written += len(chunk)
        if self.written - self.flushed >= WRITEBACK_STEP:
            _start_writeback(self.fd, self.flushed, self.written - self.flushed)
            self.flushed = self.written

    def _raise(self) -> None:
        for stage in self.stages:
            if stage.error is not None:
                raise stage.error

    def finish(self) -> str:
        """The SHA-256 (hex) once everything is written; the write's error if one failed."""
        self.close()
        self._raise()
        return self.digest.hexdigest()

    def close(self) -> None:
        """Wait for the stages to finish what they were given; idempotent."""
        for stage in self.stages:
            stage.stop()
        if self.pool is not None:
            self.pool.pairs.release()
            self.pool = None


def _pieces(data: bytes | BinaryIO | Iterable[bytes]) -> Iterator[tuple[bytes | memoryview, Callable[[], None] | None]]:
    """``data`` as (chunk, release) pairs; ``release`` (if not None) is to be called when the chunk was
    written and hashed, and its buffer may be filled again."""
    readinto = getattr(data, "readinto", None)
    if readinto is None or isinstance(data, (bytes, bytearray, memoryview)):
        # Small pieces are gathered: each chunk costs a hand-over to the threads and a write.
        pending: list[bytes] = []
        pending_size = 0
        for chunk in _chunks(data):
            if not pending and len(chunk) >= GATHER:
                yield chunk, None
                continue
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= GATHER:
                yield b"".join(pending), None
                pending, pending_size = [], 0
        if pending:
            yield b"".join(pending), None
        return
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    buffers = 0
    while True:
        if buffers < RING and free.empty():
            buffers += 1
            buffer = bytearray(CHUNK)
        else:
            buffer = free.get()  # waits for the sink's thread to be done with one
        view = memoryview(buffer)
        filled = 0
        while filled < CHUNK:  # whole buffers: fewer, larger writes and hash updates
            got = readinto(view[filled:])
            if not got:
                break
            filled += got
        if not filled:
            return
        yield view[:filled], (lambda buffer=buffer: free.put(buffer))
        if filled < CHUNK:
            return


def _write_all(fd: int, chunk: bytes | memoryview) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view):]


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
