"""RFC 4918 MKCOL (§9.3), PUT/GET/HEAD (§9.4, §9.7), DELETE (§9.6) and RFC 7233 ranges on the drive."""

from __future__ import annotations

import hashlib
import os


def test_mkcol_put_get_round_trip_in_nested_folders(drive, user):
    login = user[0]
    assert drive.request("MKCOL", f"/files/{login}/Projects", auth=user).status == 201
    assert drive.request("MKCOL", f"/files/{login}/Projects/2026", auth=user).status == 201
    body = bytes(range(256)) * 40
    put = drive.request("PUT", f"/files/{login}/Projects/2026/plan.bin", auth=user, body=body)
    assert put.status == 201
    assert put.headers["ETag"].startswith('"')
    got = drive.request("GET", f"/files/{login}/Projects/2026/plan.bin", auth=user)
    assert got.status == 200 and got.body == body
    assert got.headers["ETag"] == put.headers["ETag"]
    assert int(got.headers["Content-Length"]) == len(body)

    listing = drive.request("PROPFIND", f"/files/{login}/Projects/", auth=user, headers={"Depth": "1"})
    assert set(drive.multistatus(listing.body)) == {f"/files/{login}/Projects/", f"/files/{login}/Projects/2026/"}


def test_put_replaces_content_and_changes_etag(drive, user):
    login = user[0]
    first = drive.request("PUT", f"/files/{login}/a.txt", auth=user, body=b"one")
    second = drive.request("PUT", f"/files/{login}/a.txt", auth=user, body=b"two")
    assert first.status == 201 and second.status == 204
    assert first.headers["ETag"] != second.headers["ETag"]
    assert drive.request("GET", f"/files/{login}/a.txt", auth=user).body == b"two"


def test_non_ascii_names(drive, user):
    login = user[0]
    folder, name = "Café déjà vu", "résumé – 日本語.txt"
    assert drive.request("MKCOL", f"/files/{login}/{folder}", auth=user).status == 201
    data = "Grüße aus Köln".encode()
    assert drive.request("PUT", f"/files/{login}/{folder}/{name}", auth=user, body=data).status == 201
    assert drive.request("GET", f"/files/{login}/{folder}/{name}", auth=user).body == data
    listing = drive.request("PROPFIND", f"/files/{login}/{folder}/", auth=user, headers={"Depth": "1"})
    assert f"/files/{login}/{folder}/{name}" in drive.multistatus(listing.body)


def test_five_megabyte_file_round_trip_and_range(drive, user):
    login = user[0]
    data = os.urandom(5 * 1024 * 1024 + 123)
    assert drive.request("PUT", f"/files/{login}/big.bin", auth=user, body=data).status == 201
    got = drive.request("GET", f"/files/{login}/big.bin", auth=user)
    assert got.status == 200
    assert hashlib.sha256(got.body).digest() == hashlib.sha256(data).digest()
    part = drive.request("GET", f"/files/{login}/big.bin", auth=user, headers={"Range": "bytes=1000-1999"})
    assert part.status == 206
    assert part.body == data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"


def test_head_has_headers_and_no_body(drive, user):
    login = user[0]
    drive.request("PUT", f"/files/{login}/h.txt", auth=user, body=b"12345", headers={"Content-Type": "text/plain"})
    head = drive.request("HEAD", f"/files/{login}/h.txt", auth=user)
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Length"] == "5"
    assert head.headers["Content-Type"].startswith("text/plain")
    assert head.headers["Last-Modified"].endswith("GMT")


def test_content_type_is_guessed_when_the_client_sends_none(drive, user):
    login = user[0]
    drive.request("PUT", f"/files/{login}/photo.png", auth=user, body=b"\x89PNG....")
    assert drive.request("HEAD", f"/files/{login}/photo.png", auth=user).headers["Content-Type"] == "image/png"


def test_delete_file_then_folder_tree(drive, user):
    login = user[0]
    drive.request("MKCOL", f"/files/{login}/tmp", auth=user)
    drive.request("MKCOL", f"/files/{login}/tmp/sub", auth=user)
    drive.request("PUT", f"/files/{login}/tmp/sub/x.txt", auth=user, body=b"x")
    drive.request("PUT", f"/files/{login}/tmp/y.txt", auth=user, body=b"y")
    assert drive.request("DELETE", f"/files/{login}/tmp/y.txt", auth=user).status == 204
    assert drive.request("GET", f"/files/{login}/tmp/y.txt", auth=user).status == 404
    assert drive.request("DELETE", f"/files/{login}/tmp", auth=user).status == 204
    assert drive.request("GET", f"/files/{login}/tmp/sub/x.txt", auth=user).status == 404
    assert drive.request("PROPFIND", f"/files/{login}/tmp/", auth=user, headers={"Depth": "0"}).status == 404


def test_drive_root_and_drop_folder_cannot_be_deleted(drive, user):
    login = user[0]
    assert drive.request("DELETE", f"/files/{login}/", auth=user).status == 403
    assert drive.request("DELETE", f"/files/{login}/Drop folder/", auth=user).status == 403


def test_mkcol_errors(drive, user):
    login = user[0]
    # §9.3.1: 409 when an intermediate collection is missing, 405 on a mapped URL,
    # 415 with a body the server does not understand.
    assert drive.request("MKCOL", f"/files/{login}/missing/child", auth=user).status == 409
    assert drive.request("MKCOL", f"/files/{login}/Drop folder", auth=user).status == 405
    assert drive.request("MKCOL", f"/files/{login}/withbody", auth=user, body=b"<x/>").status == 415


def test_put_into_missing_folder_is_409_and_onto_folder_is_405(drive, user):
    login = user[0]
    assert drive.request("PUT", f"/files/{login}/nowhere/f.txt", auth=user, body=b"x").status == 409
    assert drive.request("PUT", f"/files/{login}/Drop folder", auth=user, body=b"x").status == 405


def test_conditional_put(drive, user):
    login = user[0]
    put = drive.request("PUT", f"/files/{login}/c.txt", auth=user, body=b"v1")
    again = drive.request("PUT", f"/files/{login}/c.txt", auth=user, body=b"v2", headers={"If-None-Match": "*"})
    assert again.status == 412
    stale = drive.request("PUT", f"/files/{login}/c.txt", auth=user, body=b"v2", headers={"If-Match": '"nope"'})
    assert stale.status == 412
    ok = drive.request("PUT", f"/files/{login}/c.txt", auth=user, body=b"v2", headers={"If-Match": put.headers["ETag"]})
    assert ok.status == 204


def test_move_and_copy_file(drive, user):
    login = user[0]
    base = f"/files/{login}"
    drive.request("PUT", f"{base}/m.txt", auth=user, body=b"move me")
    moved = drive.request("MOVE", f"{base}/m.txt", auth=user,
                          headers={"Destination": f"http://{drive.host}:{drive.port}{base}/Drop%20folder/m2.txt"})
    assert moved.status == 201
    assert drive.request("GET", f"{base}/m.txt", auth=user).status == 404
    assert drive.request("GET", f"{base}/Drop folder/m2.txt", auth=user).body == b"move me"
    copied = drive.request("COPY", f"{base}/Drop folder/m2.txt", auth=user,
                           headers={"Destination": f"{base}/c2.txt"})
    assert copied.status == 201
    assert drive.request("GET", f"{base}/c2.txt", auth=user).body == b"move me"


def test_lock_and_unlock(drive, user):
    login = user[0]
    drive.request("PUT", f"/files/{login}/l.txt", auth=user, body=b"x")
    lockinfo = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
                b'<D:locktype><D:write/></D:locktype><D:owner>tester</D:owner></D:lockinfo>')
    lock = drive.request("LOCK", f"/files/{login}/l.txt", auth=user, body=lockinfo, headers={"Timeout": "Second-60"})
    assert lock.status == 200
    token = lock.headers["Lock-Token"]
    assert drive.request("PUT", f"/files/{login}/l.txt", auth=user, body=b"y").status == 423
    ok = drive.request("PUT", f"/files/{login}/l.txt", auth=user, body=b"y", headers={"If": f"({token})"})
    assert ok.status == 204
    assert drive.request("UNLOCK", f"/files/{login}/l.txt", auth=user, headers={"Lock-Token": token}).status == 204
