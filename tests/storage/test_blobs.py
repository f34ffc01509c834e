"""BlobStore durability: the file is fsync'ed before its rename, a new fan-out directory too."""

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
