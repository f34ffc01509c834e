"""A private Postfix instance for a benchmark (Debian ``postfix``), delivering to Maildir.

Everything lives under one temporary directory: config_directory (main.cf, master.cf),
queue_directory, data_directory, the log file and the virtual mailbox base. smtpd listens
on an ephemeral port on 127.0.0.1 only; mail for ``<user>@<domain>`` is delivered by
virtual(8) into ``<dir>/vmail/<user>/`` (a Maildir, owned by nobody). No other listener is
started, no chroot is used, and the system instance (``/etc/postfix``, port 25) is not
touched: ``postfix -c <dir>/etc start|stop`` only drives this instance.
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
MAIL_UID = MAIL_GID = 65534  # nobody/nogroup own the delivered mail

MAIN_CF = """\
# Private instance for Kantoor's bench/smtp.py (not the system's /etc/postfix).
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/lib
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file = {dir}/postfix.log
maillog_file_prefixes = {dir}
myhostname = bench-postfix.localhost
mydomain = localhost
myorigin = $myhostname
mydestination =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {dir}/vmail
virtual_mailbox_maps = texthash:{dir}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
message_size_limit = 52428800
virtual_mailbox_limit = 0
smtputf8_enable = yes
biff = no
"""

# Only the services this instance needs, none chrooted; smtpd on the private port.
MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass
class Postfix:
    config_dir: Path
    port: int
    maildir: Path  # the recipient's Maildir (new/ holds delivered mail)
    directory: Path

    def master_pid(self) -> int:
        pid_file = self.directory / "spool" / "pid" / "master.pid"
        return int(pid_file.read_text().split()[0]) if pid_file.exists() else 0

    def delivered(self) -> int:
        """Messages in the Maildir's new/ (virtual(8) writes to tmp/ and renames when complete)."""
        try:
            with os.scandir(self.maildir / "new") as entries:
                return sum(1 for _ in entries)
        except FileNotFoundError:
            return 0

    def log_tail(self) -> str:
        log = self.directory / "postfix.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.config_dir), "stop"], capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while self.master_pid() and time.monotonic() < deadline:
            try:
                os.kill(self.master_pid(), 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)


def missing() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    if shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists():
        return ("Postfix is not installed: echo 'postfix postfix/main_mailer_type select No configuration' | "
                "debconf-set-selections && DEBIAN_FRONTEND=noninteractive apt-get install postfix (Debian package)")
    if os.geteuid() != 0:
        return "the private Postfix instance must be started as root (its master drops privileges per service)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(directory: Path, user: str, domain: str) -> Postfix:
    """Start Postfix under ``directory`` (its parents must be traversable by the postfix user)."""
    directory.mkdir(parents=True)
    os.chmod(directory, 0o755)
    etc, spool, lib, vmail = (directory / d for d in ("etc", "spool", "lib", "vmail"))
    for path in (etc, spool, lib, vmail):
        path.mkdir()
    shutil.chown(lib, "postfix", "postfix")
    os.chown(vmail, MAIL_UID, MAIL_GID)
    port = _free_port()
    (etc / "main.cf").write_text(MAIN_CF.format(dir=directory, host=HOST, domain=domain, uid=MAIL_UID,
                                                gid=MAIL_GID))
    (etc / "master.cf").write_text(MASTER_CF.format(host=HOST, port=port))
    (etc / "vmailbox").write_text(f"{user}@{domain} {user}/\n")  # trailing slash: Maildir
    env = {**os.environ, "MAIL_CONFIG": str(etc)}
    # set-permissions creates the queue's sub-directories with Postfix's owners and modes.
    for step in (["set-permissions"], ["check"], ["start"]):
        result = subprocess.run(["postfix", "-c", str(etc), *step], capture_output=True, text=True, env=env,
                                timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(step)} failed: {result.stderr.strip() or result.stdout.strip()}")
    postfix = Postfix(etc, port, vmail / user, directory)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return postfix
        except OSError:
            time.sleep(0.1)
    postfix.stop()
    raise RuntimeError(f"postfix did not listen within 30 s: {postfix.log_tail()}")
