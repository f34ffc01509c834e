"""kantoor.davserver.wsgi_host: a WSGI app on ASGI with few thread crossings, driven without a server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kantoor.davserver.wsgi_host import PREREAD_LIMIT, ClientDisconnected, WSGIHost


def _scope(method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/x", "root_path": "", "query_string": b"",
            "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000),
            "headers": headers or []}


def _run(app, scope, body_messages):  # type: ignore[no-untyped-def]
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received < len(body_messages):
            received += 1
            return body_messages[received - 1]
        await asyncio.sleep(3600)  # a client that sends nothing more
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        host = WSGIHost(app, workers=2)
        try:
            await asyncio.wait_for(host(scope, receive, send), 20)
        finally:
            host.shutdown()

    asyncio.run(main())
    return sent, received


def test_small_response_is_one_start_and_one_final_body():
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("207 Multi-Status", [("Content-Type", "application/xml")])
        return [b"<x/>"]

    sent, received = _run(app, _scope(), [])
    assert received == 0  # no body announced: nothing pulled
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 207 and sent[0]["headers"] == [(b"content-type", b"application/xml")]
    assert sent[1] == {"type": "http.response.body", "body": b"<x/>", "more_body": False}


def test_streamed_response_keeps_order_and_ends_once():
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        write = start_response("200 OK", [])
        write(b"w")  # the old-style write() callable
        yield b"a"
        yield b""
        yield b"b"

    sent, _ = _run(app, _scope(), [])
    bodies = [(m["body"], m["more_body"]) for m in sent[1:]]
    assert sent[0]["type"] == "http.response.start"
    assert bodies == [(b"w", True), (b"a", True), (b"b", False)]


def test_small_body_is_read_before_the_app_and_a_large_one_while_it_runs():
    seen: dict[str, Any] = {}

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        seen["first"] = environ["wsgi.input"].read(3)
        seen["rest"] = environ["wsgi.input"].read(None)
        seen["after"] = environ["wsgi.input"].read()
        start_response("204 No Content", [])
        return []

    small = [{"type": "http.request", "body": b"abc", "more_body": True},
             {"type": "http.request", "body": b"def", "more_body": False}]
    sent, received = _run(app, _scope("PUT", [(b"content-length", b"6")]), small)
    assert seen == {"first": b"abc", "rest": b"def", "after": b""} and received == 2
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}

    piece = b"x" * 65536
    count = (3 * PREREAD_LIMIT) // len(piece) + 20
    large = [{"type": "http.request", "body": piece, "more_body": i < count - 1} for i in range(count)]
    seen.clear()
    _run(app, _scope("PUT", [(b"content-length", str(count * len(piece)).encode())]), large)
    assert seen["first"] == b"xxx" and len(seen["rest"]) == count * len(piece) - 3


@pytest.mark.parametrize("headers", [[(b"content-length", b"6")], [(b"content-length", b"900000")],
                                     [(b"transfer-encoding", b"chunked")]])
def test_a_body_cut_off_by_the_client_raises_instead_of_ending(headers):
    outcome: dict[str, Any] = {}

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        try:
            environ["wsgi.input"].read()
        except ClientDisconnected:
            outcome["raised"] = True
        start_response("400 Bad Request", [])
        return []

    messages = [{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}]
    sent, _ = _run(app, _scope("PUT", headers), messages)
    if headers == [(b"content-length", b"6")]:
        assert sent == [] and outcome == {}  # read on the loop: the app never ran for a gone client
    else:
        assert outcome == {"raised": True}


def test_a_body_shorter_than_its_content_length_raises():
    outcome: dict[str, Any] = {}

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        try:
            environ["wsgi.input"].read()
        except ClientDisconnected:
            outcome["raised"] = True
        start_response("400 Bad Request", [])
        return []

    _run(app, _scope("PUT", [(b"content-length", b"900000")]),
         [{"type": "http.request", "body": b"abc", "more_body": False}])
    assert outcome == {"raised": True}


def test_an_app_error_before_the_response_propagates_and_sends_nothing():
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _run(app, _scope(), [])
