"""WebDAV locks (RFC 4918 §6, §7, §9.10, §9.11), kept in the database so every server process honours them."""

from __future__ import annotations

import base64
import socket
import time
import xml.etree.ElementTree as ET

import pytest
from harness import http_request

DAV = "{DAV:}"


def lockinfo(scope: str = "exclusive", owner: str = "tester") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:{scope}/>'
            f'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>{owner}</D:owner></D:lockinfo>').encode()


def lock(drive, path: str, auth, scope: str = "exclusive", depth: str = "0",  # type: ignore[no-untyped-def]
         timeout: str = "Second-600"):
    return drive.request("LOCK", path, auth=auth, body=lockinfo(scope),
                         headers={"Depth": depth, "Timeout": timeout, "Content-Type": "application/xml"})


def token_of(reply) -> str:  # type: ignore[no-untyped-def]
    assert reply.status in (200, 201), (reply.status, reply.text)
    return reply.headers["Lock-Token"].strip("<>")


def test_rfc4918_9_10_exclusive_lock_blocks_writes_without_the_token(drive, user):
    base = f"/files/{user[0]}/locked.txt"
    assert drive.request("PUT", base, auth=user, body=b"one").status == 201
    token = token_of(lock(drive, base, user))
    assert drive.request("PUT", base, auth=user, body=b"two").status == 423
    assert drive.request("DELETE", base, auth=user).status == 423
    assert lock(drive, base, user, scope="shared").status == 423
    with_token = {"If": f"(<{token}>)"}
    assert drive.request("PUT", base, auth=user, body=b"two", headers=with_token).status == 204
    assert drive.request("UNLOCK", base, auth=user, headers={"Lock-Token": f"<{token}>"}).status == 204
    assert drive.request("DELETE", base, auth=user).status == 204


def test_rfc4918_9_10_2_refresh_restarts_the_timeout(drive, user):
    base = f"/files/{user[0]}/refresh.txt"
    drive.request("PUT", base, auth=user, body=b"x")
    token = token_of(lock(drive, base, user, timeout="Second-100"))
    refreshed = drive.request("LOCK", base, auth=user, headers={"If": f"(<{token}>)", "Timeout": "Second-500"})
    assert refreshed.status == 200
    timeout = ET.fromstring(refreshed.body).find(f".//{DAV}timeout")
    assert timeout is not None and timeout.text is not None
    assert 400 < int(timeout.text.split("-")[1]) <= 500
    # lockdiscovery reports the lock, with its token and root.
    found = drive.request("PROPFIND", base, auth=user, headers={"Depth": "0"},
                          body=b'<D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>')
    assert token.encode() in found.body and b"exclusive" in found.body
    # "Infinite" is granted as the server's longest lock, never forever (§10.7).
    drive.request("UNLOCK", base, auth=user, headers={"Lock-Token": f"<{token}>"})
    infinite = lock(drive, base, user, timeout="Infinite")
    assert b"Second-" in infinite.body


def test_rfc4918_6_2_shared_locks_coexist(drive, user):
    base = f"/files/{user[0]}/shared.txt"
    drive.request("PUT", base, auth=user, body=b"x")
    first, second = token_of(lock(drive, base, user, "shared")), token_of(lock(drive, base, user, "shared"))
    assert first != second
    assert lock(drive, base, user, "exclusive").status == 423


def test_rfc4918_9_10_3_depth_infinity_lock_covers_new_members(drive, user):
    folder = f"/files/{user[0]}/locked-dir"
    assert drive.request("MKCOL", folder, auth=user).status == 201
    token = token_of(lock(drive, folder, user, depth="infinity"))
    assert drive.request("PUT", folder + "/new.txt", auth=user, body=b"x").status == 423
    assert drive.request("PUT", folder + "/new.txt", auth=user, body=b"x",
                         headers={"If": f"(<{token}>)"}).status == 201
    assert lock(drive, folder + "/new.txt", user).status == 423


def test_rfc4918_7_3_lock_on_unmapped_url_creates_an_empty_file(drive, user):
    path = f"/files/{user[0]}/lock-null.txt"
    reply = lock(drive, path, user)
    assert reply.status == 201
    assert drive.request("GET", path, auth=user).body == b""


def test_rfc4918_9_11_unlock_with_an_unknown_token_is_refused(drive, user):
    path = f"/files/{user[0]}/unlock.txt"
    drive.request("PUT", path, auth=user, body=b"x")
    reply = drive.request("UNLOCK", path, auth=user, headers={"Lock-Token": "<opaquelocktoken:nope>"})
    assert reply.status in (409, 412)


def test_another_user_cannot_lock_a_drive_they_cannot_see(drive, user):
    path = f"/files/{user[0]}/mine.txt"
    drive.request("PUT", path, auth=user, body=b"x")
    assert lock(drive, path, drive.new_user()).status in (403, 404, 409)  # 409: no such parent (for them)


def _two_server_processes(drive, start_server, tmp_path, database_url: str):  # type: ignore[no-untyped-def]
    """Two ``kantoor serve`` processes on one database and data directory, a drive client for each, and a user."""
    first = start_server(data_dir=tmp_path / "shared", KANTOOR_STORAGE_DATABASE_URL=database_url)
    second = start_server(data_dir=tmp_path / "shared", KANTOOR_STORAGE_DATABASE_URL=database_url)
    auth = first.make_user()
    return (type(drive)(first.host, first.ports["http"], first.make_user),
            type(drive)(second.host, second.ports["http"], second.make_user), auth)


def test_rfc4918_6_two_server_processes_honour_the_same_locks(drive, start_server, postgres_url, tmp_path):
    """ARCHITECTURE invariant 2: a lock taken through one process binds requests served by another."""
    a, b, auth = _two_server_processes(drive, start_server, tmp_path, postgres_url)
    path = f"/files/{auth[0]}/both.txt"
    assert a.request("PUT", path, auth=auth, body=b"v1").status == 201
    token = token_of(lock(a, path, auth))
    assert b.request("PUT", path, auth=auth, body=b"v2").status == 423
    assert lock(b, path, auth).status == 423
    assert b.request("PUT", path, auth=auth, body=b"v2", headers={"If": f"(<{token}>)"}).status == 204
    # Dead properties set through one process are read through the other.
    patch = (b'<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:example"><D:set><D:prop><Z:colour>blue</Z:colour>'
             b'</D:prop></D:set></D:propertyupdate>')
    assert a.request("PROPPATCH", path, auth=auth, body=patch, headers={"If": f"(<{token}>)"}).status == 207
    got = b.request("PROPFIND", path, auth=auth, headers={"Depth": "0"},
                    body=b'<D:propfind xmlns:D="DAV:"><D:prop><Z:colour xmlns:Z="urn:example"/></D:prop></D:propfind>')
    assert b.multistatus(got.body)[path]["{urn:example}colour"].text == "blue"
    assert b.request("UNLOCK", path, auth=auth, headers={"Lock-Token": f"<{token}>"}).status == 204
    assert a.request("PUT", path, auth=auth, body=b"v3").status == 204
    assert http_request(a.host, a.port, "GET", path, auth).body == b"v3"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_rfc4918_7_lock_granted_elsewhere_while_a_put_body_arrives_refuses_that_put(  # type: ignore[no-untyped-def]
        drive, start_server, request, tmp_path, database):
    """wsgidav refuses a LOCK while a PUT to the same URL is still receiving its body (CWE-367), but only
    in the process serving that PUT. A LOCK granted meanwhile by another server process is caught when the
    PUT commits: 423, and the file keeps its previous content (the lock holder's view stays true)."""
    a, b, auth = _two_server_processes(drive, start_server, tmp_path,
                                       request.getfixturevalue("postgres_url") if database == "postgresql" else "")
    login, password = auth
    path = f"/files/{login}/race.txt"
    assert a.request("PUT", path, auth=auth, body=b"v1").status == 201

    body = b"v2" * 100_000  # over the host's small-body size: the app starts before the body is in
    token = base64.b64encode(f"{login}:{password}".encode()).decode()
    with socket.create_connection((a.host, a.port), timeout=30) as put:
        put.sendall(f"PUT {path} HTTP/1.1\r\nHost: {a.host}\r\nAuthorization: Basic {token}\r\n"
                    f"Content-Length: {len(body)}\r\nContent-Type: text/plain\r\n\r\n".encode() + body[:50_000])
        time.sleep(0.5)  # ordering, not timing: let the first process pass its lock check at the start
        held = token_of(lock(b, path, auth))  # the second process cannot see the first one's PUT
        put.sendall(body[50_000:])
        status_line = put.makefile("rb").readline()
    assert status_line.split()[1] == b"423", status_line
    assert http_request(a.host, a.port, "GET", path, auth).body == b"v1"
    assert b.request("PUT", path, auth=auth, body=b"v3", headers={"If": f"(<{held}>)"}).status == 204
