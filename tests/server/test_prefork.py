"""``server.processes`` > 1 (kantoor.prefork): one supervisor, several workers on the same ports.

The workers must behave as one server (ARCHITECTURE invariant 2), on PostgreSQL and
on the embedded SQLite default: connections are spread across them, a change made through one
worker is pushed to IDLE sessions on another, a worker that dies is replaced, and
SIGTERM stops everything.
"""

from __future__ import annotations

import imaplib
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.harness import wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to see the workers")


def _workers(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return sorted(int(pid) for pid in children)


def _serving_pid(client: socket.socket, server_port: int, workers: list[int]) -> int:
    """Which worker holds the server side of ``client``'s connection (from /proc/net/tcp and the fd tables)."""
    client_port = client.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if local_port == server_port and remote_port == client_port:
            inode = fields[9]
    assert inode is not None, "server side of the connection not found"
    target = f"socket:[{inode}]"
    for pid in workers:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except FileNotFoundError:
                continue
    raise AssertionError("no worker holds the connection")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_workers_share_the_ports_and_push_changes_to_each_other(start_server, request,  # type: ignore[no-untyped-def]
                                                                database: str) -> None:
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else ""
    server = start_server(KANTOOR_SERVER_PROCESSES="2", KANTOOR_STORAGE_DATABASE_URL=url)
    supervisor = server.process.pid
    workers = wait_until(lambda: len(_workers(supervisor)) == 2 and _workers(supervisor))
    login, password = server.admin_login, server.admin_password
    port = server.ports["imap"]

    # Connections are spread over both workers (kantoor.accept_balance: the second goes to the
    # worker without one).
    sessions: dict[int, imaplib.IMAP4] = {}
    opened: list[imaplib.IMAP4] = []
    try:
        for _ in range(32):
            imap = imaplib.IMAP4(server.host, port, timeout=30)
            opened.append(imap)
            sessions.setdefault(_serving_pid(imap.sock, port, workers), imap)
            if len(sessions) == 2:
                break
        assert sorted(sessions) == workers

        watcher, writer = sessions[workers[0]], sessions[workers[1]]
        for imap in (watcher, writer):
            imap.login(login, password)
            imap.select("INBOX")
        # RFC 2177: the IDLE session on one worker hears of the APPEND made through the other.
        tag = watcher._new_tag().decode()
        watcher.send(f"{tag} IDLE\r\n".encode())
        assert watcher.readline().startswith(b"+")
        writer.append("INBOX", None, None, b"Subject: across workers\r\n\r\nhello\r\n")
        watcher.sock.settimeout(15)
        pushed = watcher.readline()
        assert pushed == b"* 1 EXISTS\r\n", pushed
        watcher.send(b"DONE\r\n")
        while not watcher.readline().startswith(tag.encode()):
            pass
        # Flags too (RFC 3501 §7.4.2 untagged FETCH to the other session at its next command).
        writer.store("1", "+FLAGS", "(\\Flagged)")
        time.sleep(0.5)  # the datagram crosses processes after the writer's commit
        watcher.noop()
        _typ, fetches = watcher.response("FETCH")
        assert any(b"\\Flagged" in f for f in fetches if isinstance(f, bytes)), fetches
    finally:
        for imap in opened:
            try:
                imap.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    # A worker that dies is replaced and the server keeps answering.
    os.kill(workers[0], signal.SIGKILL)
    replaced = wait_until(lambda: (now := _workers(supervisor)) and len(now) == 2 and workers[0] not in now and now)
    assert workers[1] in replaced
    for _ in range(8):  # whichever worker the kernel picks
        with imaplib.IMAP4(server.host, port, timeout=30) as imap:
            assert imap.login(login, password)[0] == "OK"

    # SIGTERM on the supervisor stops every worker and ends with 0.
    assert server.stop() == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in replaced):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}/status").exists() and "zombie" not in
                   Path(f"/proc/{pid}/status").read_text() for pid in replaced)


def test_a_taken_port_is_a_readable_error(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(RuntimeError, match="cannot start"):
            start_server(KANTOOR_SERVER_PROCESSES="2", KANTOOR_PORTS_IMAP=str(taken.getsockname()[1]))
    finally:
        taken.close()
