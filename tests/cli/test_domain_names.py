"""`kantoor domain add` / `domain dns`: only host names, one spelling (A-labels), nothing created when refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

A_LABEL = "xn--bcher-kva.test"


@pytest.fixture
def kantoor(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "KANTOOR_STORAGE_DATA_DIR": str(tmp_path / "data")}
    env.pop("KANTOOR_CONFIG", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kantoor", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    return run


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", ["bad..name", "ex_ample.test", "a\tb.test", "[127.0.0.1]", "1.2.3.4"])
def test_an_invalid_name_is_refused_and_creates_nothing(kantoor, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    result = kantoor("domain", "add", name)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kantoor: not a domain name: "), result.stderr
    dkim = tmp_path / "data" / "dkim"
    assert not dkim.exists() or list(dkim.iterdir()) == []
    assert _ok(kantoor("domain", "list")) == ""


def _zone_names(records: str) -> list[str]:
    return [line.split("\t", 1)[0] for line in records.splitlines() if "\tIN\t" in line]


def test_an_internationalized_name_is_one_domain_published_as_its_a_label(kantoor, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    added = _ok(kantoor("domain", "add", "Bücher.test"))
    assert f"added domain {A_LABEL}" in added
    assert (tmp_path / "data" / "dkim" / f"{A_LABEL}.pem").is_file()
    names = _zone_names(added)
    assert len(names) == 4 and names[:2] == [f"{A_LABEL}."] * 2 and names[3] == f"_dmarc.{A_LABEL}.", added
    assert names[2].endswith(f"._domainkey.{A_LABEL}.")  # whatever the selector
    records = [line for line in added.splitlines() if "\tIN\t" in line]
    assert all(line.isascii() for line in records) and f"mailto:postmaster@{A_LABEL}" in records[3]

    refused = kantoor("domain", "add", A_LABEL)
    assert refused.returncode == 1 and f"domain {A_LABEL} exists" in refused.stderr
    assert _ok(kantoor("domain", "list")).split() == [A_LABEL]

    # `domain dns` takes either spelling and prints the same ASCII records (the key made at `domain add`).
    by_u_label, by_a_label = _ok(kantoor("domain", "dns", "bücher.test")), _ok(kantoor("domain", "dns", A_LABEL))
    assert by_u_label == by_a_label and by_u_label.isascii() and _zone_names(by_u_label) == names
    assert sorted(p.name for p in (tmp_path / "data" / "dkim").iterdir()) == [f"{A_LABEL}.pem"]
