"""Uploads cut off by the client (RFC 9112 §7.1, §6.3): chunked as Finder sends them, or short of Content-Length.

An incomplete body is not a message: the previous version of the file stays, no
new blob is kept (the temporary file goes at once, and nothing is left for the
garbage collector to find), and the owner's usage does not change.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from harness import http_request

# More than wsgidav's 1 MiB read block, so the body is being streamed into a blob when the client leaves.
SENT_BEFORE_LEAVING = 3 * 1024 * 1024
CHUNK = 256 * 1024


def _wait_for(condition, what: str, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _put_and_leave(host: str, port: int, path: str, auth: tuple[str, str], chunked: bool, tmp_dir: Path) -> None:
    """Send a PUT whose body stops half-way, wait until the server streams it to a blob, then close."""
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {2 * SENT_BEFORE_LEAVING}"
    head = (f"PUT {quote(path, safe='/@')} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {token}\r\n"
            f"Content-Type: application/octet-stream\r\n{framing}\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head)
        for _ in range(SENT_BEFORE_LEAVING // CHUNK):
            data = os.urandom(CHUNK)
            sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)
        _wait_for(lambda: any(tmp_dir.iterdir()), "the server to stream the body into a temporary blob")
    # The connection is closed here, without the last chunk / the rest of the body.


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_interrupted_upload_keeps_the_previous_version_and_leaves_no_blob(start_server, chunked: bool):
    server = start_server()
    core = server.core()
    login, password = server.make_user(plan="standard")
    path = f"/files/{login}/report.bin"
    first = os.urandom(200_000)  # above the inline limit: kept as a blob file
    put = http_request(server.host, server.ports["http"], "PUT", path, (login, password), first)
    assert put.status == 201
    account = core.store.get_account(login)
    usage_before = core.store.usage(account.principal_id).get("documents", 0)
    tmp_dir = core.store.blobs.tmp

    _put_and_leave(server.host, server.ports["http"], path, (login, password), chunked, tmp_dir)
    _wait_for(lambda: not any(tmp_dir.iterdir()), "the server to drop the temporary blob")

    got = http_request(server.host, server.ports["http"], "GET", path, (login, password))
    assert got.status == 200
    # Compared by digest: a failure then reports two short strings, not a diff of megabytes.
    assert (len(got.body), hashlib.sha256(got.body).hexdigest()) == (len(first), hashlib.sha256(first).hexdigest())
    assert got.headers["ETag"] == put.headers["ETag"]
    assert core.store.usage(account.principal_id).get("documents", 0) == usage_before

    core.store.collect_garbage(grace_seconds=0)
    on_disk = {sha for sha, _mtime in core.store.blobs.all_files()}
    assert on_disk == {hashlib.sha256(first).hexdigest()}
    assert not any(tmp_dir.iterdir())


def test_complete_chunked_upload_is_stored(drive, user):
    """RFC 9112 §7.1: a chunked PUT (Finder's way) whose last chunk arrives is stored whole."""
    login = user[0]
    data = os.urandom(3 * CHUNK + 17)
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    head = (f"PUT {quote(f'/files/{login}/chunked.bin', safe='/@')} HTTP/1.1\r\nHost: {drive.host}\r\n"
            f"Authorization: Basic {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((drive.host, drive.port), timeout=30) as sock:
        sock.sendall(head)
        for start in range(0, len(data), CHUNK):
            piece = data[start:start + CHUNK]
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 201"), reply[:200]
    got = drive.request("GET", f"/files/{login}/chunked.bin", auth=user).body
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
