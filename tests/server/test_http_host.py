"""The HTTP listener's own limits and its WSGI host (kantoor.davserver.http_protocol, kantoor.davserver.wsgi_host).

ARCHITECTURE invariant 4: a request head without end gets a 4xx and a closed
connection, never the server's memory; a keep-alive connection still serves
pipelined requests; a body cut off by the client is never taken as complete.
"""

from __future__ import annotations

import base64
import importlib.util
import socket
import time

from harness import IN_CI, wait_until

HTTPTOOLS = importlib.util.find_spec("httptools") is not None


def _read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    data = b""
    try:
        while len(data) < limit:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    except ConnectionResetError:
        pass  # the server closed with our unread bytes in its buffer: what it sent first still counts
    return data


def _send_head_in_pieces(port: int, header_bytes: int) -> bytes:
    """A GET whose one header grows to ``header_bytes``, sent 16 KiB at a time; the server's answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Long: ")
        sent = 0
        try:
            while sent < header_bytes:
                sock.sendall(b"a" * 16384)
                sent += 16384
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end: expected
        return _read_until_closed(sock)


def test_request_head_over_64_kib_is_refused_and_the_connection_closed(server) -> None:  # type: ignore[no-untyped-def]
    reply = _send_head_in_pieces(server.ports["http"], 8 * 1024 * 1024)
    status = reply.split(b"\r\n", 1)[0]
    if HTTPTOOLS or IN_CI:
        # RFC 6585 §5; h11 (used only where httptools is missing) answers 400 instead.
        assert status == b"HTTP/1.1 431 Request Header Fields Too Large", reply[:200]
    else:
        assert status.split(b" ")[1] in (b"400", b"431"), reply[:200]
    assert b"connection: close" in reply.lower()
    # A head just under the bound is served, and the listener still works.
    reply = _send_head_in_pieces(server.ports["http"], 48 * 1024)
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]


def test_oversized_head_does_not_grow_the_server(server) -> None:  # type: ignore[no-untyped-def]
    def rss_kib() -> int:
        for line in open(f"/proc/{server.process.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    before = rss_kib()
    _send_head_in_pieces(server.ports["http"], 64 * 1024 * 1024)
    assert rss_kib() - before < 32 * 1024  # KiB: the 64 MB head was never held


def test_pipelined_requests_on_one_connection_are_all_answered(server) -> None:  # type: ignore[no-untyped-def]
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.ports["http"]), timeout=20) as sock:
        sock.sendall(request * 5 + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        replies = _read_until_closed(sock)
    assert replies.count(b"HTTP/1.1 200 ") == 6


def _auth(login: str, password: str) -> bytes:
    return b"Authorization: Basic " + base64.b64encode(f"{login}:{password}".encode()) + b"\r\n"


def test_small_and_large_bodies_arrive_whole_and_a_cut_one_is_not_stored(server) -> None:  # type: ignore[no-untyped-def]
    login, password = server.make_user()
    port = server.ports["http"]
    small = bytes(range(256)) * 16  # read on the loop before the app runs
    large = bytes(range(251)) * 20000  # ~5 MB: pulled in batches while the app runs

    def put(name: str, body: bytes, announced: int | None = None, chunked: bool = False) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = (f"PUT /files/{login}/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n").encode() + _auth(
                login, password)
            if chunked:
                sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
                for i in range(0, len(body), 100_000):
                    piece = body[i:i + 100_000]
                    sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                if announced is None:
                    sock.sendall(b"0\r\n\r\n")
            else:
                sock.sendall(head + f"Content-Length: {announced or len(body)}\r\n\r\n".encode() + body)
            if announced is not None:
                time.sleep(0.3)
                sock.shutdown(socket.SHUT_RDWR)  # the client gives up mid-body
                return b""
            return _read_until_closed(sock)

    def get(name: str) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"GET /files/{login}/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
                         + _auth(login, password) + b"\r\n")
            reply = _read_until_closed(sock, limit=64 << 20)
        head, _, body = reply.partition(b"\r\n\r\n")
        return body if head.startswith(b"HTTP/1.1 200") else head

    assert put("small.bin", small).startswith(b"HTTP/1.1 201")
    assert put("large.bin", large).startswith(b"HTTP/1.1 201")
    assert put("chunked.bin", large, chunked=True).startswith(b"HTTP/1.1 201")
    assert get("small.bin") == small
    assert get("large.bin") == large
    assert get("chunked.bin") == large
    # Cut off: a small announced body, a large one, and a chunked one without its last chunk.
    put("small.bin", small[:1000], announced=len(small))
    put("large.bin", large[:2_000_000], announced=len(large))
    put("chunked.bin", large[:300_000], announced=0, chunked=True)
    time.sleep(0.5)
    assert get("small.bin") == small
    assert get("large.bin") == large
    assert get("chunked.bin") == large
    wait_until(lambda: not list((server.data_dir / "blobs" / "tmp").iterdir()), timeout=20)
