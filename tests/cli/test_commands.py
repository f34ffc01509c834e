"""The `kantoor` command line: every administration command, and one-line errors with a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def kantoor(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "KANTOOR_STORAGE_DATA_DIR": str(tmp_path / "data")}
    env.pop("KANTOOR_CONFIG", None)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kantoor", *args], env=env, input=stdin, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    return run


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def _error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_and_user_lifecycle(kantoor) -> None:  # type: ignore[no-untyped-def]
    assert "up to date" in _ok(kantoor("db", "upgrade"))
    _ok(kantoor("user", "add", "Ann@Example.org", "--plan", "standard", "--password-stdin",
                stdin="a long enough passphrase\n"))
    assert "password:" in _ok(kantoor("user", "add", "bob@example.org", "--generate"))
    listing = _ok(kantoor("user", "list"))
    assert "ann@example.org\tstandard\tactive" in listing and "bob@example.org\tfree\tactive" in listing
    _ok(kantoor("user", "passwd", "ann@example.org", "--password-stdin", stdin="another long passphrase\n"))
    _ok(kantoor("user", "disable", "bob@example.org"))
    assert "bob@example.org\tfree\tdisabled" in _ok(kantoor("user", "list"))
    _ok(kantoor("user", "disable", "bob@example.org", "--enable"))
    _error(kantoor("user", "delete", "bob@example.org"), "--yes")
    _ok(kantoor("user", "delete", "bob@example.org", "--yes"))
    assert "bob@example.org" not in _ok(kantoor("user", "list"))


def test_user_errors_are_one_line(kantoor) -> None:  # type: ignore[no-untyped-def]
    _ok(kantoor("user", "add", "ann@example.org", "--generate"))
    _error(kantoor("user", "add", "ann@example.org", "--generate"), "exists")
    _error(kantoor("user", "add", "no-at-sign", "--generate"), "e-mail address")
    _error(kantoor("user", "add", "c@example.org", "--password-stdin", stdin="short\n"), "weak password")
    _error(kantoor("user", "add", "c@example.org", "--plan", "gold", "--generate"), "no plan 'gold'")
    _error(kantoor("user", "passwd", "nobody@example.org", "--generate"), "no account")
    _error(kantoor("user", "disable", "nobody@example.org"), "no account")


def test_domains(kantoor) -> None:  # type: ignore[no-untyped-def]
    _ok(kantoor("domain", "add", "Example.ORG"))
    assert _ok(kantoor("domain", "list")).split() == ["example.org"]
    _error(kantoor("domain", "add", "example.org"), "exists")
    _error(kantoor("domain", "add", "not a domain"), "not a domain name")


def test_groups_and_plans(kantoor) -> None:  # type: ignore[no-untyped-def]
    for login in ("ann@example.org", "bob@example.org", "cy@example.org"):
        _ok(kantoor("user", "add", login, "--generate"))
    _ok(kantoor("group", "create", "Office", "ann@example.org"))
    _ok(kantoor("group", "add-member", "Office", "bob@example.org", "--write"))
    assert "Office\tadmin ann@example.org\t2 member(s)" in _ok(kantoor("group", "list"))
    _error(kantoor("group", "create", "Second", "ann@example.org"), "groups capacity exceeded")  # free: 1 group
    _error(kantoor("group", "remove-member", "Office", "ann@example.org"), "administrator cannot leave")
    _ok(kantoor("group", "remove-member", "Office", "bob@example.org"))
    _error(kantoor("group", "remove-member", "Office", "cy@example.org"), "not a member")
    _error(kantoor("user", "delete", "ann@example.org", "--yes"), "administers Office")

    plans = _ok(kantoor("plan", "list"))
    assert {line.split("\t")[0] for line in plans.splitlines()} >= {"free", "standard", "professional"}
    _ok(kantoor("plan", "set", "ann@example.org", "professional"))
    _ok(kantoor("group", "create", "Second", "ann@example.org"))  # the higher plan allows more, at once
    _error(kantoor("plan", "set", "ann@example.org", "gold"), "no plan 'gold'")


def test_bad_configuration_stops_every_command(kantoor, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "kantoor.toml").write_text("[limits]\nmax_message_bytes = -1\n")
    _error(kantoor("user", "list"), "limits.max_message_bytes: must be positive")
