"""Test harness: real `kantoor serve` processes, PostgreSQL databases, external tools.

Imported by the conftest files (``tests`` is on pytest's ``pythonpath``) so that
every folder's fixtures start servers and pick tools the same way.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

HOST = "127.0.0.1"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def require_tool(name: str) -> str:
    """Path of an external tool; skips (outside CI) or fails (in CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(message + " (CI must install it: see scripts/test.sh)")
        pytest.skip(message)
    return path


def pg_admin_url() -> str:
    return os.environ.get("KANTOOR_TEST_POSTGRES", DEFAULT_PG)


def postgres_available() -> str | None:
    """None if PostgreSQL can be used, else the reason it cannot."""
    try:
        import psycopg

        with psycopg.connect(pg_admin_url().replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"PostgreSQL not reachable at {pg_admin_url()}: {exc.__class__.__name__}"


def make_settings(data_dir: Path, database_url: str = "", **env: str):  # type: ignore[no-untyped-def]
    from kantoor.config import load_settings

    environ = {"KANTOOR_STORAGE_DATA_DIR": str(data_dir), "KANTOOR_STORAGE_DATABASE_URL": database_url, **env}
    return load_settings(path=None, environ=environ)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http_request(host: str, port: int, method: str, path: str, auth: tuple[str, str] | None = None,
                 body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    """One HTTP request on a fresh connection; ``path`` is quoted here (pass it unquoted)."""
    all_headers = dict(headers or {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        all_headers["Authorization"] = f"Basic {token}"
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request(method, quote(path, safe="/@:"), body=body, headers=all_headers)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


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
    _core: Any = None

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

    def core(self):  # type: ignore[no-untyped-def]
        """A core on this server's own database and settings, opened once (the server migrated it)."""
        if self._core is None:
            from kantoor.config import load_settings
            from kantoor.core import open_core

            config = self.env.get("KANTOOR_CONFIG") or str(self.data_dir.parent / "kantoor.toml")
            settings = load_settings(config if Path(config).is_file() else None, environ=self.env)
            self._core = open_core(settings, migrate=False)
        return self._core

    def make_user(self, login: str | None = None, password: str | None = None,
                  plan: str = "standard") -> tuple[str, str]:
        """Create an account directly in the server's database (what `kantoor user add` does,
        without a process start per account; the CLI itself is tested in tests/cli)."""
        from kantoor.auth import hash_password

        login = login or f"user{secrets.token_hex(4)}@localhost"
        password = password or f"pw-{secrets.token_urlsafe(12)}"
        core = self.core()
        core.quota.plan(plan)
        core.store.create_account(login, hash_password(password), plan)
        return login, password

    def stop(self, timeout: float = 20) -> int:
        if self._core is not None:
            self._core.close()
            self._core = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def wait_until(predicate: Callable[[], Any], timeout: float = 20) -> Any:
    """Poll ``predicate`` (every 0.1 s, at most ``timeout`` seconds) until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def launch_server(data_dir: Path, config: str | None = None, **env: str) -> ServerProcess:
    """Start ``kantoor serve`` on ephemeral ports; ``config`` is the text of a kantoor.toml
    (used by the server and by ``cli()``), ``env`` are extra ``KANTOOR_*`` variables."""
    data_dir.mkdir(parents=True, exist_ok=True)
    extra: dict[str, str] = {}
    if config is not None:
        path = data_dir.parent / f"{data_dir.name}.toml"
        path.write_text(config)
        extra["KANTOOR_CONFIG"] = str(path)
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
    full_env.update(extra)
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


def read_smtp_replies(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` complete replies (multi-line replies joined), read within the socket timeout."""
    buffer = b""
    replies: list[bytes] = []
    while len(replies) < count:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {replies}"
        buffer += chunk
        while b"\r\n" in buffer and len(replies) < count:
            line, buffer = buffer.split(b"\r\n", 1)
            if len(line) > 3 and line[3:4] == b"-":
                continue  # continuation of a multi-line reply
            replies.append(line)
    return replies
