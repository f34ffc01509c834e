"""Plain GET/HEAD of one's own files answered without wsgidav (kantoor.davserver.files.direct_read):
the same status, headers (RFC 9110 §8.8: ETag and Last-Modified validators, Content-Type, Content-Length;
RFC 9110 §14.3 Accept-Ranges) and body as wsgidav's answer, and everything else left to wsgidav."""

from __future__ import annotations

import base64

import pytest


def test_plain_get_and_head_match_wsgidavs_answer(core, asgi_drive, drive_account):
    drive = asgi_drive
    login = "direct@example.org"
    owner, auth = drive_account(login)
    store = core.store
    docs = store.create_collection(owner, "folder", "docs", actor=owner)
    store.put_item(docs.id, "a.txt", b"alpha", "text/plain", actor=owner)  # inline in the row
    store.put_item(docs.id, "mid.bin", b"m" * (store.inline_limit + 10), "application/octet-stream", actor=owner)
    big = bytes(range(256)) * (10 * 1024 + 7)  # 2.5 MiB: sent in pieces
    store.put_item(docs.id, "big.bin", big, "application/x-big", actor=owner)
    store.put_item(docs.id, "ü n.txt", b"unicode", "text/plain; charset=utf-8", actor=owner)

    for name, body in (("a.txt", b"alpha"), ("mid.bin", b"m" * (store.inline_limit + 10)),
                       ("big.bin", big), ("ü n.txt", b"unicode")):
        path = f"/files/{login}/docs/{name}"
        for method in ("GET", "HEAD"):
            # "Depth: 0" changes nothing for a GET, but wsgidav is the one to decide it.
            reference = drive.request(method, path, {**auth, "Depth": "0"})
            before = drive.direct_reads
            direct = drive.request(method, path, auth)
            assert drive.direct_reads == before + 1, f"{method} {name} was not answered directly"
            assert reference[0] == direct[0] == 200
            assert {k: v for k, v in reference[1].items() if k != "date"} == \
                   {k: v for k, v in direct[1].items() if k != "date"}
            assert "date" in direct[1]
            assert reference[2] == direct[2] == (body if method == "GET" else b"")


def test_everything_else_goes_to_wsgidav(core, asgi_drive, drive_account):
    drive = asgi_drive
    login = "handed-on@example.org"
    owner, auth = drive_account(login)
    other_login = "someone-else@example.org"
    drive_account(other_login)
    store = core.store
    docs = store.create_collection(owner, "folder", "docs", actor=owner)
    item, _ = store.put_item(docs.id, "a.txt", b"alpha-beta", "text/plain", actor=owner)
    path = f"/files/{login}/docs/a.txt"
    drive.request("GET", path, {**auth, "Depth": "0"})  # a full check: the login is remembered

    cases = [
        ("GET", path, {"Range": "bytes=0-4"}, b"", 206),  # RFC 9110 §14.2
        ("GET", path, {"Range": "bytes=50-60"}, b"", 416),
        ("GET", path, {"If-None-Match": item.etag}, b"", 304),  # RFC 9110 §13.1.2
        ("GET", path, {"If-Match": '"other"'}, b"", 412),  # RFC 9110 §13.1.1
        ("GET", path, {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, b"", 304),
        ("GET", f"/files/{login}/docs/missing.txt", {}, b"", 404),
        ("GET", f"/files/{login}/docs", {}, b"", 301),  # a folder: wsgidav's browser redirects
        ("GET", f"/files/{login}/docs/", {}, b"", 200),  # and lists it
        ("GET", f"/files/{other_login}/docs/a.txt", {}, b"", 404),  # another's drive does not exist
        ("GET", f"/files/{login}/Groups/x/a.txt", {}, b"", 404),
        ("GET", f"/files/{login}/docs/../docs/a.txt", {}, b"", 200),
        ("GET", f"/files/{login}/docs/", {}, b"davmount", 200),
    ]
    for method, target, headers, query, status in cases:
        got = drive.request(method, target, {**auth, **headers}, query=query)
        assert got[0] == status, (target, headers, got[0])
        assert drive.direct_reads == 0, (target, headers)

    # Without credentials, or with ones never checked in full: wsgidav's 401 (RFC 7235 §3.1).
    assert drive.request("GET", path, {})[0] == 401
    wrong = base64.b64encode(f"{login}:wrong".encode()).decode()
    assert drive.request("GET", path, {"Authorization": f"Basic {wrong}"})[0] == 401


# SQLite only (the database_url fixture overridden): on PostgreSQL there are no lookup threads of their own.
@pytest.mark.parametrize("database_url", [""], ids=["sqlite"])
def test_small_reads_are_answered_while_every_shared_worker_serves_a_stalled_download(core, asgi_drive,
                                                                                     drive_account):
    """A plain GET of a small own file is looked up and read on threads of its own (a one-thread pool), which never
    wait for a client: with every shared worker thread held by a large download whose client reads nothing,
    it is still answered at once, and the downloads complete once their clients read again. (On SQLite; on
    PostgreSQL the shared pool looks up plain reads too, see direct_read.SQLITE_READERS.)"""
    import asyncio

    from kantoor.davserver.files.direct_read import BLOCK
    from kantoor.storage.database import is_sqlite

    assert is_sqlite(core.store.engine)

    drive = asgi_drive  # two shared worker threads
    login = "stalled@example.org"
    owner, auth = drive_account(login)
    store = core.store
    docs = store.create_collection(owner, "folder", "docs", actor=owner)
    big = b"B" * (3 * BLOCK + 5)
    small = b"s" * (store.inline_limit + 100)  # a blob file, read whole by the lookup thread
    store.put_item(docs.id, "big.bin", big, "application/octet-stream", actor=owner)
    store.put_item(docs.id, "small.bin", small, "application/octet-stream", actor=owner)
    assert drive.request("GET", f"/files/{login}/docs/small.bin", {**auth, "Depth": "0"})[0] == 200  # remembered

    async def no_body() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def main() -> None:
        reading = asyncio.Event()  # the stalled clients read again once it is set
        stalled: list[int] = []
        downloads: list[list[dict]] = [[], []]

        def slow_client(number: int):  # type: ignore[no-untyped-def]
            async def send(message: dict) -> None:
                downloads[number].append(message)
                if message["type"] == "http.response.body" and not reading.is_set():
                    stalled.append(number)
                    await reading.wait()
            return send

        slow = [asyncio.create_task(drive.app(drive.scope("GET", f"/files/{login}/docs/big.bin", auth), no_body,
                                              slow_client(number))) for number in range(2)]
        for _ in range(2000):
            if len(stalled) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(stalled) == [0, 1], "both shared workers should be held by a stalled download"

        answer: list[dict] = []

        async def send(message: dict) -> None:
            answer.append(message)

        await asyncio.wait_for(drive.app(drive.scope("GET", f"/files/{login}/docs/small.bin", auth), no_body, send),
                               10)
        assert answer[0]["status"] == 200
        assert b"".join(m.get("body", b"") for m in answer[1:]) == small

        reading.set()
        await asyncio.wait_for(asyncio.gather(*slow), 30)
        for messages in downloads:
            assert messages[0]["status"] == 200
            assert b"".join(m.get("body", b"") for m in messages[1:]) == big
            assert messages[-1].get("more_body", False) is False

    asyncio.run(main())
