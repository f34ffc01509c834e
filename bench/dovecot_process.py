"""A private Dovecot IMAP server for a benchmark (Debian ``dovecot-imapd``).

Everything lives under one temporary directory: its own config file, base_dir (sockets,
pid), state_dir, log, a passwd-file with one user, and the user's Maildir. It listens on
an ephemeral port on 127.0.0.1 only and runs in the foreground (``dovecot -F``) as a
child of the benchmark, so stopping the benchmark stops it. The Debian package's own
service (``/etc/dovecot``, port 143) is neither used nor started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
MAIL_UID = MAIL_GID = 65534  # nobody/nogroup: mail is not stored as root

CONFIG = """\
# Private instance for Kantoor's bench/imap.py (not the system's /etc/dovecot).
instance_name = kantoor-bench-{port}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
mail_max_userip_connections = 100
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home/%n
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@dataclass
class Dovecot:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def binary() -> str | None:
    return shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)


def missing() -> str | None:
    """Why a private Dovecot cannot run here, or None."""
    if binary() is None or not Path("/usr/lib/dovecot/imap").exists():
        return "Dovecot is not installed: apt-get install dovecot-imapd (Debian package)"
    if os.geteuid() != 0:
        return "the private Dovecot instance is started as root (it drops to its own users)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(directory: Path, user: str, password: str) -> Dovecot:
    directory.mkdir(parents=True)
    os.chmod(directory, 0o755)  # the unprivileged imap processes must reach the Maildir
    for sub in ("run", "state"):
        (directory / sub).mkdir()
    home = directory / "home"
    home.mkdir()
    (home / user.split("@")[0]).mkdir()
    for path in (home, home / user.split("@")[0]):
        os.chown(path, MAIL_UID, MAIL_GID)
    (directory / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
    port = _free_port()
    conf = directory / "dovecot.conf"
    conf.write_text(CONFIG.format(dir=directory, host=HOST, port=port, uid=MAIL_UID, gid=MAIL_GID))
    dovecot = binary()
    assert dovecot is not None
    process = subprocess.Popen([dovecot, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (directory / "dovecot.log").read_text() if (directory / "dovecot.log").exists() else ""
            raise RuntimeError(f"dovecot exited at start-up: {log[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return Dovecot(process, port, directory)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("dovecot did not listen within 30 s")
