"""Real WebDAV clients against the drive (skipped outside CI, naming the tool, when it is not installed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from harness import require_tool


def _tool(name: str) -> str:
    return require_tool(name)


def test_rclone_copies_a_tree_up_and_back(drive, user, tmp_path: Path):
    rclone = _tool("rclone")
    login, password = user
    obscured = subprocess.run([rclone, "obscure", password], capture_output=True, text=True, check=True).stdout.strip()
    env = {
        **os.environ,
        "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
        "RCLONE_CONFIG_KANTOOR_TYPE": "webdav",
        "RCLONE_CONFIG_KANTOOR_URL": f"http://{drive.host}:{drive.port}/files/{login}/",
        "RCLONE_CONFIG_KANTOOR_VENDOR": "other",
        "RCLONE_CONFIG_KANTOOR_USER": login,
        "RCLONE_CONFIG_KANTOOR_PASS": obscured,
    }
    source = tmp_path / "source"
    (source / "sub dir").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "sub dir" / "ünï.bin").write_bytes(os.urandom(300_000))
    # Mixed sizes, 0 bytes to 20 MiB (the 200 MiB case belongs to bench/webdav.py).
    (source / "leer ø.txt").write_bytes(b"")
    (source / "größer 日本").mkdir()
    (source / "größer 日本" / "zwanzig.bin").write_bytes(os.urandom(20 * 1024 * 1024))

    def run(*args: str) -> str:
        result = subprocess.run([rclone, *args], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("copy", str(source), "kantoor:from-rclone")
    listed = {entry["Path"] for entry in json.loads(run("lsjson", "-R", "kantoor:from-rclone"))}
    assert {"a.txt", "sub dir", "sub dir/ünï.bin", "leer ø.txt", "größer 日本/zwanzig.bin"} <= listed
    run("copy", "kantoor:from-rclone", str(tmp_path / "back"))
    assert (tmp_path / "back" / "sub dir" / "ünï.bin").read_bytes() == (source / "sub dir" / "ünï.bin").read_bytes()
    run("check", str(source), "kantoor:from-rclone")
    run("check", str(source), str(tmp_path / "back"))


def test_cadaver_makes_a_folder_and_puts_a_file(drive, user, tmp_path: Path):
    cadaver = _tool("cadaver")
    login, password = user
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"machine {drive.host}\nlogin {login}\npassword {password}\n")
    netrc.chmod(0o600)
    local = tmp_path / "hello.txt"
    local.write_text("hello from cadaver")
    script = f"mkcol via-cadaver\ncd via-cadaver\nput {local} hello.txt\nls\nquit\n"
    result = subprocess.run([cadaver, f"http://{drive.host}:{drive.port}/files/{login}/"], input=script,
                            env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not WebDAV-enabled" not in result.stdout, result.stdout
    got = drive.request("GET", f"/files/{login}/via-cadaver/hello.txt", auth=user)
    assert got.status == 200 and got.body == b"hello from cadaver"


def _litmus(drive, user, tmp_path: Path, suites: str) -> subprocess.CompletedProcess[str]:
    litmus = _tool("litmus")
    login, password = user
    return subprocess.run([litmus, f"http://{drive.host}:{drive.port}/files/{login}/", login, password],
                          env={**os.environ, "TESTS": suites}, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)


def test_litmus_passes_every_test_of_all_five_suites(drive, user, tmp_path: Path):
    # RFC 4918 class 1 and 2 as litmus checks it: basic, copymove, props (dead
    # properties in the database), locks (the lock table in the database), http.
    suites = ("basic", "copymove", "props", "locks", "http")
    result = _litmus(drive, user, tmp_path, " ".join(suites))
    summaries = dict(re.findall(r"<- summary for `(\w+)': of \d+ tests run: \d+ passed, (\d+) failed", result.stdout))
    assert set(summaries) == set(suites), result.stdout
    assert all(failed == "0" for failed in summaries.values()), result.stdout
    assert result.returncode == 0, result.stdout
