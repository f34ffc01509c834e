"""The blob store's write pipeline that large uploads go through (kantoor.storage.blobs: read here, write and
hash in pool threads): every kind of source gives the same file and address, in order; a failed write or an
upload over its limit is raised and leaves no temporary file (nothing half-written is ever named by a hash)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path

import pytest

from kantoor.storage import blobs
from kantoor.storage.blobs import BlobStore, BlobTooLarge


class _Trickle(io.RawIOBase):
    """A readinto source that returns at most ``step`` bytes a call, as a socket does."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data = io.BytesIO(data)
        self.step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        view = memoryview(buffer)
        return self.data.readinto(view[:self.step])


@pytest.mark.parametrize("size", [0, 1, 70_000, blobs.CHUNK, blobs.CHUNK + 1, 9 * blobs.CHUNK + 12_345])
def test_every_source_gives_the_same_blob(tmp_path: Path, size: int) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = os.urandom(size)
    expected = (hashlib.sha256(data).hexdigest(), size)
    sources = [data, io.BytesIO(data), _Trickle(data, 65_536), _Trickle(data, 3 * blobs.CHUNK),
               [data[i:i + 300_000] for i in range(0, size, 300_000)],
               (data[i:i + 10_000] for i in range(0, size, 10_000))]  # small pieces, gathered
    for source in sources:
        stored = store.write(source)
        assert (stored.sha256, stored.size) == expected, type(source)
        assert hashlib.sha256(store.read(stored.sha256)).hexdigest() == expected[0]
    assert not any(store.tmp.iterdir())


def test_a_failed_write_is_raised_and_leaves_no_temporary_file(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    real_write = os.write
    calls = []

    def full_after_three(fd: int, data) -> int:  # type: ignore[no-untyped-def]
        calls.append(len(data))
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(blobs.os, "write", full_after_three)
    with pytest.raises(OSError) as raised:
        store.write(_Trickle(os.urandom(8 * blobs.CHUNK), blobs.CHUNK))
    assert raised.value.errno == errno.ENOSPC
    assert not any(store.tmp.iterdir())
    assert not list(store.all_files())


def test_a_stream_over_its_limit_is_refused_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(BlobTooLarge):
        store.write(_Trickle(os.urandom(5 * blobs.CHUNK), blobs.CHUNK), max_size=3 * blobs.CHUNK + 1)
    assert not any(store.tmp.iterdir())
    assert not list(store.all_files())


def test_with_every_pair_of_threads_busy_the_reader_writes_and_hashes_itself(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    pool = blobs._sink_pool()
    taken = 0
    while pool.pairs.acquire(blocking=False):
        taken += 1
    try:
        data = os.urandom(4 * blobs.CHUNK + 5)
        assert store.write(_Trickle(data, blobs.CHUNK)).sha256 == hashlib.sha256(data).hexdigest()
    finally:
        for _ in range(taken):
            pool.pairs.release()
    # And every pair came back from the writes before (a BoundedSemaphore refuses one release too many).
    assert taken == blobs.SINK_THREADS // 2
