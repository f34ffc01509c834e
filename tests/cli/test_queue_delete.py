"""`kantoor queue delete ID…`: all or none, like `queue retry`, and it says which messages it deleted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness import make_settings

from kantoor.core import open_core
from kantoor.storage.outbound import NewOutbound


def _kantoor(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KANTOOR_STORAGE_DATA_DIR": str(tmp_path / "data")}
    env.pop("KANTOOR_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "kantoor", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def _queue(tmp_path: Path, count: int) -> list[int]:
    """``count`` queued messages, written by a core on the data directory the commands use."""
    core = open_core(make_settings(tmp_path / "data"))
    try:
        return [core.store.enqueue_outbound(NewOutbound("ann@example.org", [f"r{n}@x.net"], b"hi")).id
                for n in range(count)]
    finally:
        core.close()


def _queued_ids(tmp_path: Path) -> list[int]:
    listing = _kantoor(tmp_path, "queue", "list")
    assert listing.returncode == 0, listing.stderr
    return [int(line.split("\t", 1)[0]) for line in listing.stdout.splitlines() if "\t" in line]


def test_an_unknown_id_deletes_nothing(tmp_path: Path) -> None:
    first, second = _queue(tmp_path, 2)
    result = _kantoor(tmp_path, "queue", "delete", str(first), "999")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == "kantoor: no queued message 999"
    assert _queued_ids(tmp_path) == [first, second]


def test_the_ids_given_are_deleted_and_named(tmp_path: Path) -> None:
    first, second, third = _queue(tmp_path, 3)
    result = _kantoor(tmp_path, "queue", "delete", str(third), str(first), str(third))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"deleted 2 message(s) from the queue: {third}, {first}"
    assert _queued_ids(tmp_path) == [second]
