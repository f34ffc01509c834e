"""A response's head goes out with the first piece of its body (kantoor.davserver.http_protocol): one
write for a small answer instead of two, and the bytes on the wire exactly as uvicorn's (RFC 9112 §6:
status line, header fields, empty line, then the body), for a small body, HEAD, a large body, an
interim ``100 Continue`` (RFC 9110 §10.1.1: sent at once, never held) and an app that fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("httptools")

from uvicorn.config import Config  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402

from kantoor.davserver.http_protocol import BoundedHeadProtocol  # noqa: E402


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 80), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, pieces: Any) -> None:
        self.writes.append(b"".join(pieces))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _exchange(app: Any, request: bytes, date_header: bool = False) -> _Transport:
    async def run() -> _Transport:
        config = Config(app=app, http=BoundedHeadProtocol, access_log=False, lifespan="off",
                        server_header=False, date_header=date_header)
        config.load()
        state = ServerState()
        if date_header:  # what uvicorn's server loop puts there every second
            state.default_headers = [(b"date", b"Fri, 02 Jan 2026 00:00:00 GMT"), *config.encoded_headers]
        protocol = BoundedHeadProtocol(config=config, server_state=state, app_state={})
        transport = _Transport()
        protocol.connection_made(transport)
        protocol.data_received(request)
        for _ in range(100):
            await asyncio.sleep(0)
            if protocol.cycle is not None and protocol.cycle.response_complete:
                break
        await asyncio.gather(*protocol.tasks)
        return transport

    return asyncio.run(run())


def _app(body: bytes, read_first: bool = False) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if read_first:
            await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), (b"etag", b'"x"')]})
        await send({"type": "http.response.body", "body": body, "more_body": False})
    return app


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\netag: \"x\"\r\n\r\n"


def test_small_answer_is_written_once_with_its_head() -> None:
    body = b"a" * 4096
    transport = _exchange(_app(body), b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.writes == [HEAD % 4096 + body]


def test_head_request_and_empty_body_write_the_head_alone() -> None:
    transport = _exchange(_app(b""), b"HEAD /f HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.writes == [HEAD % 0]


def test_large_body_follows_its_head_in_one_write() -> None:
    body = bytes(range(256)) * 1024  # 256 KiB: one vectored write of both
    transport = _exchange(_app(body), b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.writes == [HEAD % len(body) + body]


def test_100_continue_is_sent_before_the_body_is_read_and_not_held() -> None:
    transport = _exchange(_app(b"ok", read_first=True),
                          b"PUT /f HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
    assert transport.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert b"".join(transport.writes[1:]) == HEAD % 2 + b"ok"


def test_an_app_failing_after_the_start_still_sends_the_head_then_closes() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        raise RuntimeError("boom")

    transport = _exchange(app, b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"]
    assert transport.closed


def test_a_streamed_body_keeps_its_pieces_in_order() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        for piece, more in ((b"", True), (b"ab", True), (b"cd", True), (b"ef", False)):
            await send({"type": "http.response.body", "body": piece, "more_body": more})

    transport = _exchange(app, b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.writes[0] == b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n"
    assert b"".join(transport.writes) == b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nabcdef"


def test_an_answer_dated_by_the_app_carries_one_date_field() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"0"), (b"Date", b"Thu, 01 Jan 2026 00:00:00 GMT")]})
        await send({"type": "http.response.body", "body": b""})

    async def undated(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    # RFC 9110 §6.6.1: an origin server sends Date; §5.3: once.
    dated = b"".join(_exchange(app, b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n", date_header=True).writes)
    assert dated.lower().count(b"\r\ndate: ") == 1 and b"Thu, 01 Jan 2026" in dated
    plain = b"".join(_exchange(undated, b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n", date_header=True).writes)
    assert plain.lower().count(b"\r\ndate: ") == 1
