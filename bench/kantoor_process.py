"""Start a throw-away `kantoor serve` on ephemeral loopback ports for a benchmark."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import process_cpu


@dataclass
class Kantoor:
    process: subprocess.Popen[str]
    data_dir: Path
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    admin_login: str = ""
    admin_password: str = ""

    def add_user(self, login: str, password: str, plan: str = "professional") -> None:
        subprocess.run([sys.executable, "-m", "kantoor", "user", "add", login, "--plan", plan, "--password-stdin"],
                       input=password + "\n", env=self.env, text=True, check=True, capture_output=True)

    def rss_kib(self) -> int:
        """Resident memory of the server (Linux /proc): with ``server.processes`` > 1, of all its processes."""
        return process_cpu.rss_kib([self.process.pid])

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # The throw-away data folder (database, blobs: hundreds of MB after a large run) goes with the server.
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start(database_url: str = "") -> Kantoor:
    """``KANTOOR_SERVER_PROCESSES`` (and any other ``KANTOOR_*`` variable) in the environment reaches the server."""
    data_dir = Path(tempfile.mkdtemp(prefix="kantoor-bench-")) / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "KANTOOR_STORAGE_DATA_DIR": str(data_dir),
           "KANTOOR_STORAGE_DATABASE_URL": database_url,
           **{f"KANTOOR_PORTS_{p.upper()}": "0"
              for p in ("http", "https", "imap", "imaps", "smtp", "submission", "submissions")}}
    proc = subprocess.Popen([sys.executable, "-m", "kantoor", "serve"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server = Kantoor(proc, data_dir, env)
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("kantoor serve exited during start-up")
        if m := re.search(r"login:\s+(\S+)", line):
            server.admin_login = m.group(1)
        if m := re.search(r"one-time password:\s+(\S+)", line):
            server.admin_password = m.group(1)
        if line.startswith("KANTOOR-READY "):
            server.ports = json.loads(line.split(" ", 1)[1])
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    return server
