"""BlobStore durability: the file is fsync'ed before its rename, a new fan-out directory too; reading a whole blob."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kantoor.storage.blobs import BlobStore


def test_blob_file_is_synced_and_only_a_new_directory_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    synced: list[str] = []
    real_fsync = os.fsync

    def counting(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    first = store.write(b"one")
    assert first.sha256 == hashlib.sha256(b"one").hexdigest() and store.read(first.sha256) == b"one"
    directory = str(store.path(first.sha256).parent)
    # The temp file, then the fan-out directory that was just created.
    assert len(synced) == 2 and synced[1] == directory
    # The same bytes again (a second delivery of one message): its directory exists, so only the file is synced.
    synced.clear()
    again = store.write(b"one")
    assert again == first and store.read(again.sha256) == b"one"
    assert len(synced) == 1 and synced[0] != directory


def test_read_returns_the_whole_file_whatever_size_the_caller_expects(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """BlobStore.read(sha, size): the size the caller knows (the item row's) saves the fstat; a size that is
    wrong (a row out of step with its file, never expected) still gives the file's whole content."""
    store = BlobStore(tmp_path)
    data = bytes(range(256)) * 300 + b"tail"
    sha = store.write(data).sha256
    fstats = []
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: fstats.append(fd) or real_fstat(fd))
    assert store.read(sha, len(data)) == data
    assert fstats == []
    for wrong in (0, 1, len(data) - 1, len(data) + 1, 10 * len(data)):
        assert store.read(sha, wrong) == data, wrong
    assert store.read(sha) == data
    assert len(fstats) == 1
