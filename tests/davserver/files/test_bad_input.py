"""Bad input gets a 4xx, never a 500 or a file outside the user's tree (ARCHITECTURE invariant 4)."""

from __future__ import annotations

import http.client
import socket


def raw_request(drive, method: str, raw_path: str, auth, headers: dict[str, str] | None = None) -> int:  # type: ignore[no-untyped-def]
    """A request whose path is sent exactly as given (no quoting), for traversal and encoding tricks."""
    import base64

    conn = http.client.HTTPConnection(drive.host, drive.port, timeout=30)
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    conn.putrequest(method, raw_path, skip_accept_encoding=True)
    for key, value in {"Authorization": f"Basic {token}", "Content-Length": "1", **(headers or {})}.items():
        conn.putheader(key, value)
    conn.endheaders(b"x")
    status = conn.getresponse().status
    conn.close()
    return status


def test_path_traversal_and_encoded_slashes_stay_inside_the_drive(drive, user):
    victim = drive.new_user()
    assert drive.request("PUT", f"/files/{victim[0]}/secret.txt", auth=victim, body=b"secret").status == 201
    login = user[0]
    for path in (f"/files/{login}/../{victim[0]}/secret.txt", f"/files/{login}/%2e%2e/{victim[0]}/secret.txt",
                 f"/files/{login}/..%2f{victim[0]}%2fsecret.txt", f"/files/{login}/a%2Fb",
                 f"/files/{login}/%00"):
        for method in ("GET", "PUT", "DELETE"):
            status = raw_request(drive, method, path, user)
            assert 400 <= status < 500, (method, path, status)
    assert drive.request("GET", f"/files/{victim[0]}/secret.txt", auth=victim).body == b"secret"


def test_rfc4918_10_3_malformed_destination_is_4xx(drive, user):
    base = f"/files/{user[0]}"
    assert drive.request("PUT", f"{base}/src.txt", auth=user, body=b"x").status == 201
    for destination in ("", "not a url", "http://", "http://other.example/files/x", f"{base}/../../etc/passwd",
                        f"http://{drive.host}:{drive.port}/elsewhere/x", f"http://{drive.host}:{drive.port}{base}/a%00b",
                        f"http://{drive.host}:{drive.port}{base}/no/such/folder/x", "ftp://x/y"):
        for method in ("MOVE", "COPY"):
            reply = drive.request(method, f"{base}/src.txt", auth=user, headers={"Destination": destination})
            assert 400 <= reply.status < 500 or reply.status == 502, (method, destination, reply.status)
    assert drive.request("GET", f"{base}/src.txt", auth=user).body == b"x"


def test_a_client_that_hangs_up_mid_upload_leaves_the_previous_version(drive, user):
    path = f"/files/{user[0]}/interrupted.bin"
    assert drive.request("PUT", path, auth=user, body=b"old version").status == 201
    import base64

    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    with socket.create_connection((drive.host, drive.port), timeout=10) as sock:
        sock.sendall((f"PUT {path.replace('@', '%40')} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n"
                      "Content-Length: 10000000\r\n\r\n").encode() + b"n" * 200_000)
    # The server notices the hang-up, drops the partial body and keeps the old file.
    for _ in range(50):
        reply = drive.request("GET", path, auth=user)
        if reply.body == b"old version":
            break
    assert reply.status == 200 and reply.body == b"old version"
