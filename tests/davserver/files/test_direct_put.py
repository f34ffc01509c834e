"""Small plain PUTs into one's own drive stored without wsgidav (kantoor.davserver.files.direct_put): the same
answer as wsgidav's (RFC 9110 §9.3.4: 201 Created for a new file, 204 No Content for a replaced one; the new
ETag, RFC 4918 §9.7), the same stored file, and every other PUT (conditional, locked, refused) left to wsgidav."""

from __future__ import annotations

import re

# wsgidav's status pages end with the time they were made.
_STAMP = re.compile(rb" - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?")


def _comparable(reply):  # type: ignore[no-untyped-def]
    status, headers, body = reply
    return status, {k: v for k, v in headers.items() if k != "date"}, _STAMP.sub(b"", body)


def test_plain_put_matches_wsgidavs_answer_and_stored_file(core, asgi_drive, drive_account):
    login = "direct-put@example.org"
    owner, auth = drive_account(login)
    drive = asgi_drive
    store = core.store
    # Small enough that a body a direct PUT takes (up to PREREAD_LIMIT) can still be a blob file.
    store.inline_limit = 4096
    docs = store.create_collection(owner, "folder", "docs", actor=owner)
    drive.request("GET", f"/files/{login}/docs/", auth)  # a full check: the login is remembered
    # X-OC-Mtime changes nothing here (wsgidav's honor_mtime_header is off), but hands the PUT to wsgidav.
    via_wsgidav = {**auth, "X-OC-Mtime": "1700000000"}
    cases = ((b"alpha", "text/plain", "bin"), (b"", None, "bin"), (b"x" * (store.inline_limit + 5), None, "bin"),
             (bytes(range(256)) * 200, "application/octet-stream", "txt"), (b"notes", None, "txt"))
    for body, content_type, extension in cases:
        headers = {"Content-Length": str(len(body))} | ({"Content-Type": content_type} if content_type else {})
        for replacing in (False, True):
            before = drive.direct_puts
            reference = drive.request("PUT", f"/files/{login}/docs/ref.{extension}", {**via_wsgidav, **headers},
                                      body)
            assert drive.direct_puts == before
            direct = drive.request("PUT", f"/files/{login}/docs/new.{extension}", {**auth, **headers}, body)
            assert drive.direct_puts == before + 1, "the PUT was not stored directly"
            assert reference[0] == direct[0] == (204 if replacing else 201)
            assert _comparable(reference) == _comparable(direct)
            ref = store.get_item(docs.id, f"ref.{extension}", owner)
            new = store.get_item(docs.id, f"new.{extension}", owner)
            assert direct[1]["etag"] == new.etag
            assert (new.size, new.etag, new.content_type) == (ref.size, ref.etag, ref.content_type)
            assert store.read_body(new) == body
        for name in (f"ref.{extension}", f"new.{extension}"):
            store.delete_item(docs.id, name, actor=owner)
    # A guessed type carries wsgidav's default charset.
    assert "charset" in ref.content_type


def test_every_other_put_goes_to_wsgidav(core, asgi_drive, drive_account):
    login = "put-handed-on@example.org"
    owner, auth = drive_account(login)
    drive = asgi_drive
    store = core.store
    docs = store.create_collection(owner, "folder", "docs", actor=owner)
    store.put_item(docs.id, "a.txt", b"alpha", "text/plain", actor=owner)
    drive.request("GET", f"/files/{login}/docs/", auth)
    base = f"/files/{login}"
    one = {"Content-Length": "3"}
    cases = [
        (f"{base}/docs", {}, 405),  # a folder
        (f"{base}/missing/x.txt", {}, 409),  # RFC 4918 §9.7.1: the parent must exist
        (f"{base}/docs/a.txt", {"If-None-Match": "*"}, 412),  # RFC 9110 §13.1.2
        (f"{base}/docs/a.txt", {"If-Match": '"other"'}, 412),  # RFC 9110 §13.1.1
        (f"{base}/docs/a.txt", {"Content-Range": "bytes 0-2/3"}, 400),  # RFC 9110 §14.4
        (f"{base}/Groups", {}, 405),  # the folder the server makes
        (f"{base}/docs/a.txt?x=1", {}, 204),
    ]
    for target, headers, status in cases:
        path, _, query = target.partition("?")
        got = drive.request("PUT", path, {**auth, **one, **headers}, b"abc", query=query.encode())
        assert got[0] == status, (target, headers, got)
    assert drive.direct_puts == 0

    # A lock held by someone: wsgidav refuses the PUT without the token (RFC 4918 §7.4).
    store.acquire_lock(f"/~{owner}/docs/a.txt", scope="exclusive", depth="0", principal="someone-else")
    assert drive.request("PUT", f"{base}/docs/a.txt", {**auth, **one}, b"xyz")[0] == 423
    assert drive.direct_puts == 0
    assert store.read_body(store.get_item(docs.id, "a.txt", owner)) == b"abc"


def test_a_put_the_store_refuses_is_answered_by_wsgidav_and_stores_nothing(core, asgi_drive, drive_account):
    login = "put-refused@example.org"
    owner, auth = drive_account(login)
    drive = asgi_drive
    store = core.store
    docs = store.create_collection(owner, "folder", "docs", actor=owner)
    drive.request("GET", f"/files/{login}/docs/", auth)
    drive.app.ctx.settings.limits.max_upload_bytes = 10
    got = drive.request("PUT", f"/files/{login}/docs/big.txt", {**auth, "Content-Length": "20"}, b"y" * 20)
    assert got[0] == 413  # RFC 9110 §15.5.14
    assert [item.name for item in store.list_items(docs.id, owner)] == []


def test_concurrent_direct_puts_each_get_their_own_answer_and_etag_rfc9110_9_3_4(core, asgi_drive, drive_account):
    """PUTs arriving together are written together (group commit, storage/items.py); each still answers for
    its own file: 201 for the one that created it, 204 for the ones that replaced it, the ETag it stored."""
    import threading

    login = "direct-put-together@example.org"
    owner, auth = drive_account(login)
    drive = asgi_drive
    store = core.store
    docs = store.create_collection(owner, "folder", "docs", actor=owner)
    drive.request("GET", f"/files/{login}/docs/", auth)  # a full check: the login is remembered
    replies: dict[tuple[int, int], tuple[int, dict[str, str], bytes]] = {}
    start = threading.Barrier(6)

    def client(worker: int) -> None:
        start.wait()
        for n in range(4):
            name = "shared.bin" if n == 3 else f"w{worker}-{n}.bin"
            body = b"worker %d file %d" % (worker, n)
            replies[(worker, n)] = drive.request("PUT", f"/files/{login}/docs/{name}",
                                                 {**auth, "Content-Length": str(len(body))}, body)

    threads = [threading.Thread(target=client, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(replies) == 24
    for (worker, n), (status, headers, _page) in replies.items():
        if n == 3:
            continue
        assert status == 201
        item = store.get_item(docs.id, f"w{worker}-{n}.bin", owner)
        assert headers["etag"] == item.etag and store.read_body(item) == b"worker %d file %d" % (worker, n)
    shared = sorted(status for (_worker, n), (status, _h, _p) in replies.items() if n == 3)
    assert shared == [201, 204, 204, 204, 204, 204]
    item = store.get_item(docs.id, "shared.bin", owner)
    assert item.etag in {headers["etag"] for (_w, n), (_s, headers, _p) in replies.items() if n == 3}
    assert store.usage(owner)["documents"] == sum(i.size for i in store.list_items(docs.id, actor=owner))
