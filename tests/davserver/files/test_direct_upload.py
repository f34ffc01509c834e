"""Large plain PUTs into one's own drive, their body read straight off the socket
(kantoor.davserver.files.direct_upload, kantoor.davserver.http_protocol.RawBody), on a live HTTP listener.

The answer is wsgidav's (RFC 9110 §9.3.4: 201 Created for a new file, 204 No Content for a replaced one;
the new ETag, RFC 4918 §9.7), and so is every refusal once the body is in (RFC 4331 / RFC 4918 §11.5: 507
when the drive is full; RFC 4918 §9.10.6 / §11.3: 423 for a lock granted while the body arrived); the
connection stays usable for the next, even pipelined, request (RFC 9112 §9.3); ``Expect: 100-continue`` is
answered before the body is read (RFC 9110 §10.1.1); a body cut short is never stored (RFC 9112 §6.3).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kantoor.config.settings import PlanSettings

SIZE = 3 * 1024 * 1024 + 123  # over PREREAD_LIMIT and over one 1 MiB buffer
_STAMP = re.compile(rb" - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?")
# X-OC-Mtime changes nothing here (wsgidav's honor_mtime_header is off) but hands the PUT to wsgidav.
VIA_WSGIDAV = "X-OC-Mtime: 1700000000\r\n"


class LiveDrive:
    """The drive's ASGI app under uvicorn with Kantoor's HTTP protocol, in a thread, on a test core."""

    def __init__(self, core: Any) -> None:
        import uvicorn

        from kantoor.davserver.files import build_files_asgi
        from kantoor.davserver.http_protocol import BoundedHeadProtocol

        self.core = core
        self.files = build_files_asgi(core.settings, core.store, core.authenticator, core.quota, workers=4)
        self.files.ctx.recent_logins.ttl = 600
        self.uploads = self.files.host  # DirectUploads: counts the PUTs it stored itself

        async def app(scope: dict, receive: Any, send: Any) -> None:
            await self.files({**scope, "root_path": "/files"}, receive, send)

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                                http=BoundedHeadProtocol, loop="asyncio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the listener did not start"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.files.host.shutdown()
        self.sock.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)


@pytest.fixture
def live(open_test_core) -> Iterator[LiveDrive]:  # type: ignore[no-untyped-def]
    def small_plan(settings: Any) -> None:
        settings.plans["small"] = PlanSettings(title="Small", documents_bytes=8 * 1024 * 1024, webdav=True)

    drive = LiveDrive(open_test_core(small_plan))
    yield drive
    drive.close()


def _account(live: LiveDrive, login: str, plan: str = "standard") -> tuple[int, str, int]:
    """(principal id, Authorization header line, id of the folder "docs") of a new account whose login the
    drive has checked in full (so that plain PUTs may skip wsgidav)."""
    from kantoor.auth import hash_password

    account = live.core.store.create_account(login, hash_password("upload-pw-1"), plan)
    owner = account.principal_id
    docs = live.core.store.create_collection(owner, "folder", "docs", actor=owner)
    header = "Authorization: Basic " + base64.b64encode(f"{login}:upload-pw-1".encode()).decode() + "\r\n"
    with live.connect() as sock:
        sock.sendall(f"GET /files/{login}/docs/ HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
        assert _reply(sock)[0] == 200
    return owner, header, docs.id


def _put_head(path: str, auth: str, length: int, extra: str = "") -> bytes:
    return (f"PUT {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/octet-stream\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def _reply(sock: socket.socket, buffered: bytearray | None = None,
           to_head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response read from ``sock`` (``buffered``: bytes already read past the previous one, kept across
    calls; ``to_head``: the answer to a HEAD, without body): (status, headers with lower-case names, body)."""
    data = buffered if buffered is not None else bytearray()
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"the connection closed: {bytes(data)!r}"
        data += piece
    head, _, _ = bytes(data).partition(b"\r\n\r\n")
    del data[:len(head) + 4]
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = 0 if to_head else int(headers.get("content-length", "0"))
    while len(data) < length:
        piece = sock.recv(65536)
        assert piece, "the connection closed mid-body"
        data += piece
    body = bytes(data[:length])
    del data[:length]
    return status, headers, body


def _comparable(reply: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = reply
    return status, {k: v for k, v in headers.items() if k != "date"}, _STAMP.sub(b"", body)


def test_large_put_is_stored_from_the_socket_with_wsgidavs_answer_on_a_kept_connection(live):
    login = "large-put@example.org"
    owner, auth, docs = _account(live, login)
    store = live.core.store
    body = os.urandom(SIZE)
    with live.connect() as sock:
        for replacing in (False, True):
            before = live.uploads.stored
            sock.sendall(_put_head(f"/files/{login}/docs/ref.bin", auth, SIZE, VIA_WSGIDAV) + body)
            reference = _reply(sock)
            assert live.uploads.stored == before
            # The same connection goes on: the server found the next request where the body ended.
            sock.sendall(_put_head(f"/files/{login}/docs/new.bin", auth, SIZE) + body)
            direct = _reply(sock)
            assert live.uploads.stored == before + 1, "the PUT was not stored from the socket"
            assert reference[0] == direct[0] == (204 if replacing else 201)
            assert _comparable(reference) == _comparable(direct)
            ref, new = store.get_item(docs, "ref.bin", owner), store.get_item(docs, "new.bin", owner)
            assert direct[1]["etag"] == new.etag
            assert (new.size, new.etag, new.content_type) == (ref.size, ref.etag, ref.content_type) == (
                SIZE, new.etag, "application/octet-stream")
            assert hashlib.sha256(store.read_body(new)).digest() == hashlib.sha256(body).digest()
        sock.sendall(f"GET /files/{login}/docs/new.bin HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
        got = _reply(sock)
        assert got[0] == 200 and got[2] == body


def test_pipelined_request_after_a_large_put_is_answered(live):
    login = "pipelined-put@example.org"
    _owner, auth, _docs = _account(live, login)
    body = os.urandom(SIZE)
    with live.connect() as sock:
        then = f"HEAD /files/{login}/docs/p.bin HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        sock.sendall(_put_head(f"/files/{login}/docs/p.bin", auth, SIZE) + body + then.encode())
        buffered = bytearray()
        assert _reply(sock, buffered)[0] == 201
        status, headers, _ = _reply(sock, buffered, to_head=True)
        assert status == 200 and headers["content-length"] == str(SIZE)
    assert live.uploads.stored == 1


def test_expect_100_continue_is_answered_before_the_body_is_sent(live):
    login = "expect-put@example.org"
    owner, auth, docs = _account(live, login)
    body = os.urandom(SIZE)
    with live.connect() as sock:
        sock.sendall(_put_head(f"/files/{login}/docs/e.bin", auth, SIZE, "Expect: 100-continue\r\n"))
        interim = _reply(sock)
        assert interim[0] == 100
        sock.sendall(body)
        assert _reply(sock)[0] == 201
    assert live.uploads.stored == 1
    assert live.core.store.get_item(docs, "e.bin", owner).size == SIZE


def test_large_put_beyond_the_drive_is_507_as_wsgidav_answers_and_keeps_nothing(live):
    login = "full-drive@example.org"
    owner, auth, docs = _account(live, login, plan="small")  # 8 MiB of documents
    store = live.core.store
    kept = os.urandom(SIZE)
    with live.connect() as sock:
        sock.sendall(_put_head(f"/files/{login}/docs/kept.bin", auth, SIZE) + kept)
        assert _reply(sock)[0] == 201
        used = store.usage(owner).get("documents", 0)
        replies = []
        for extra in (VIA_WSGIDAV, ""):
            sock.sendall(_put_head(f"/files/{login}/docs/more.bin", auth, 6 * 1024 * 1024, extra)
                         + os.urandom(6 * 1024 * 1024))
            replies.append(_reply(sock))
    assert (live.uploads.taken, live.uploads.stored) == (2, 1)
    assert replies[0][0] == replies[1][0] == 507
    assert _comparable(replies[0]) == _comparable(replies[1])
    assert [item.name for item in store.list_items(docs, owner)] == ["kept.bin"]
    assert store.usage(owner).get("documents", 0) == used
    store.collect_garbage(grace_seconds=0)
    assert {sha for sha, _ in store.blobs.all_files()} == {hashlib.sha256(kept).hexdigest()}
    assert not any(store.blobs.tmp.iterdir())


def _wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_lock_granted_while_the_body_arrives_is_423_as_wsgidav_answers(live):
    login = "locked-meanwhile@example.org"
    owner, auth, docs = _account(live, login)
    store = live.core.store
    first = os.urandom(SIZE)
    with live.connect() as sock:
        sock.sendall(_put_head(f"/files/{login}/docs/a.bin", auth, SIZE) + first)
        assert _reply(sock)[0] == 201
    replies = []
    for extra in (VIA_WSGIDAV, ""):
        with live.connect() as sock:
            sock.sendall(_put_head(f"/files/{login}/docs/a.bin", auth, SIZE, extra) + os.urandom(SIZE // 2))
            _wait_for(lambda: any(store.blobs.tmp.iterdir()), "the body to be streamed into a blob")
            lock = store.acquire_lock(f"/~{owner}/docs/a.bin", scope="exclusive", depth="0",
                                      principal="someone-else")
            sock.sendall(os.urandom(SIZE - SIZE // 2))
            replies.append(_reply(sock))
            store.release_lock(lock.token)
    assert (live.uploads.taken, live.uploads.stored) == (2, 1)  # the refused PUT's body was taken too
    assert replies[0][0] == replies[1][0] == 423
    assert _comparable(replies[0]) == _comparable(replies[1])
    item = store.get_item(docs, "a.bin", owner)
    assert hashlib.sha256(store.read_body(item)).digest() == hashlib.sha256(first).digest()


def test_body_cut_short_keeps_the_previous_version_and_no_blob(live):
    login = "cut-short@example.org"
    owner, auth, docs = _account(live, login)
    store = live.core.store
    first = os.urandom(SIZE)
    with live.connect() as sock:
        sock.sendall(_put_head(f"/files/{login}/docs/c.bin", auth, SIZE) + first)
        assert _reply(sock)[0] == 201
        etag = store.get_item(docs, "c.bin", owner).etag
    with live.connect() as sock:
        sock.sendall(_put_head(f"/files/{login}/docs/c.bin", auth, 2 * SIZE) + os.urandom(SIZE))
        _wait_for(lambda: any(store.blobs.tmp.iterdir()), "the body to be streamed into a blob")
    # Closed without the rest: the temporary file goes, nothing is answered, nothing is stored.
    _wait_for(lambda: not any(store.blobs.tmp.iterdir()), "the temporary blob to be removed")
    item = store.get_item(docs, "c.bin", owner)
    assert item.etag == etag
    assert hashlib.sha256(store.read_body(item)).digest() == hashlib.sha256(first).digest()
    store.collect_garbage(grace_seconds=0)
    assert {sha for sha, _ in store.blobs.all_files()} == {hashlib.sha256(first).hexdigest()}
    assert (live.uploads.taken, live.uploads.stored) == (2, 1)
