"""Shared fixtures: a real ``kantoor serve`` process on ephemeral loopback ports,
and storage cores on SQLite and on PostgreSQL.

``server`` is one process for the whole session (fast); ``start_server`` starts
extra ones with their own settings (a test that needs a different configuration,
or two processes on one PostgreSQL database).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REPO = Path(__file__).resolve().parent.parent


def require_tool(name: str) -> str:
    """Path of an external tool; skips (outside CI) or fails (in CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(message + " (CI must install it: see scripts/test.sh)")
        pytest.skip(message)
    return path


# --------------------------------------------------------------------- PostgreSQL
def _pg_admin_url() -> str:
    return os.environ.get("KANTOOR_TEST_POSTGRES", DEFAULT_PG)


def postgres_available() -> str | None:
    """None if PostgreSQL can be used, else the reason it cannot."""
    try:
        import psycopg

        url = _pg_admin_url().replace("+psycopg", "")
        with psycopg.connect(url, connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"PostgreSQL not reachable at {_pg_admin_url()}: {exc.__class__.__name__}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    reason = postgres_available()
    if reason is not None:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    import psycopg

    admin = _pg_admin_url().replace("+psycopg", "")
    name = f"kantoor_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = _pg_admin_url().rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------- cores
def make_settings(data_dir: Path, database_url: str = "", **env: str):  # type: ignore[no-untyped-def]
    from kantoor.config import load_settings

    environ = {"KANTOOR_STORAGE_DATA_DIR": str(data_dir), "KANTOOR_STORAGE_DATABASE_URL": database_url, **env}
    return load_settings(path=None, environ=environ)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """"" (SQLite in the data directory) or a fresh PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""


@pytest.fixture
def open_test_core(database_url: str, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Factory: ``open_test_core(customize)`` opens a core on this test's database;
    ``customize(settings)`` may change settings first (e.g. add a plan)."""
    from kantoor.core import open_core

    opened = []

    def factory(customize=None):  # type: ignore[no-untyped-def]
        settings = make_settings(tmp_path / "data", database_url)
        if customize is not None:
            customize(settings)
        c = open_core(settings)
        opened.append(c)
        return c

    yield factory
    for c in opened:
        c.close()


@pytest.fixture
def core(open_test_core):  # type: ignore[no-untyped-def]
    """An opened core (Store + ACL + quota) on SQLite and on PostgreSQL."""
    return open_test_core()


# --------------------------------------------------------------------- server process
@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    data_dir: Path
    env: dict[str, str]
    ports: dict[str, int]
    admin_login: str = ""
    admin_password: str = ""
    host: str = HOST
    output: list[str] = field(default_factory=list)

    @property
    def certificate(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    def url(self, path: str = "/", tls: bool = False) -> str:
        scheme, port = ("https", self.ports["https"]) if tls else ("http", self.ports["http"])
        return f"{scheme}://{self.host}:{port}{path}"

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "kantoor", *args], env=self.env, input=stdin,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kantoor {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def make_user(self, login: str | None = None, password: str | None = None,
                  plan: str = "standard") -> tuple[str, str]:
        login = login or f"user{secrets.token_hex(4)}@localhost"
        password = password or f"pw-{secrets.token_urlsafe(12)}"
        self.cli("user", "add", login, "--plan", plan, "--password-stdin", stdin=password + "\n")
        return login, password

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def launch_server(data_dir: Path, **env: str) -> ServerProcess:
    full_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "KANTOOR_STORAGE_DATA_DIR": str(data_dir),
        "KANTOOR_AUTH_FAILURE_DELAY_SECONDS": "0.1",
        **{f"KANTOOR_PORTS_{name.upper()}": "0"
           for name in ("http", "https", "imap", "imaps", "smtp", "submission", "submissions")},
        **env,
    }
    full_env.pop("KANTOOR_CONFIG", None)
    process = subprocess.Popen([sys.executable, "-m", "kantoor", "serve"], env=full_env, cwd=str(data_dir.parent),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = ServerProcess(process, data_dir, full_env, {})
    deadline = time.monotonic() + 60
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("kantoor serve exited during start-up:\n" + "".join(server.output))
        server.output.append(line)
        if m := re.search(r"login:\s+(\S+)", line):
            server.admin_login = m.group(1)
        if m := re.search(r"one-time password:\s+(\S+)", line):
            server.admin_password = m.group(1)
        if line.startswith("KANTOOR-READY "):
            import json

            server.ports = json.loads(line.split(" ", 1)[1])
            break
    else:
        process.kill()
        raise RuntimeError("kantoor serve did not become ready:\n" + "".join(server.output))

    # Keep draining the output so the server never blocks on a full pipe.
    def drain() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            server.output.append(line)
            del server.output[:-2000]

    threading.Thread(target=drain, daemon=True).start()
    return server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One running ``kantoor serve`` (SQLite, ephemeral ports) shared by the session."""
    proc = launch_server(tmp_path_factory.mktemp("server") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Factory: ``start_server(**KANTOOR_env)`` starts another server for this test."""
    started: list[ServerProcess] = []

    def start(data_dir: Path | None = None, **env: str) -> ServerProcess:
        proc = launch_server(data_dir or tmp_path / f"data{len(started)}", **env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
