"""Real WebDAV clients against the drive (skipped outside CI, naming the tool, when it is not installed)."""

from __future__ import annotations

import json
import os
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

    def run(*args: str) -> str:
        result = subprocess.run([rclone, *args], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("copy", str(source), "kantoor:from-rclone")
    listed = {entry["Path"] for entry in json.loads(run("lsjson", "-R", "kantoor:from-rclone"))}
    assert {"a.txt", "sub dir", "sub dir/ünï.bin"} <= listed
    run("copy", "kantoor:from-rclone", str(tmp_path / "back"))
    assert (tmp_path / "back" / "sub dir" / "ünï.bin").read_bytes() == (source / "sub dir" / "ünï.bin").read_bytes()
    run("check", str(source), "kantoor:from-rclone")


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


def test_litmus_basic_copymove_and_http_suites_pass(drive, user, tmp_path: Path):
    result = _litmus(drive, user, tmp_path, "basic copymove http")
    assert result.returncode == 0, result.stdout


def test_litmus_locks_suite_passes_except_dead_property_writes(drive, user, tmp_path: Path):
    # Dead properties are not stored yet, so litmus' PROPPATCH on a locked file
    # ("owner_modify") is refused with 403; every locking behaviour itself passes.
    result = _litmus(drive, user, tmp_path, "locks")
    failures = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert failures and all("owner_modify" in line for line in failures), result.stdout
