"""Who may open a drive: HTTP Basic (RFC 7617) on every request, the plan's webdav gate, private trees."""

from __future__ import annotations

import base64


def test_unauthenticated_request_gets_401_with_basic_challenge(drive, user):
    for method in ("PROPFIND", "GET", "PUT", "OPTIONS"):
        reply = drive.request(method, f"/files/{user[0]}/", headers={"Depth": "0"})
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"].startswith("Basic ")


def test_wrong_password_gets_401(drive, user):
    reply = drive.request("PROPFIND", f"/files/{user[0]}/", auth=(user[0], "not the password"),
                          headers={"Depth": "0"})
    assert reply.status == 401


def test_malformed_authorization_header_gets_401_not_500(drive, user):
    for value in ("Basic", "Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                  "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(), "Bearer abc", "Digest username=x"):
        reply = drive.request("PROPFIND", f"/files/{user[0]}/", headers={"Depth": "0", "Authorization": value})
        assert reply.status == 401, value


def test_login_is_case_insensitive_and_hrefs_use_the_canonical_login(drive, user):
    login, password = user
    reply = drive.request("PROPFIND", f"/files/{login.upper()}/", auth=(login.upper(), password),
                          headers={"Depth": "0"})
    assert reply.status == 207
    assert list(drive.multistatus(reply.body)) == [f"/files/{login}/"]


def test_other_users_drive_is_not_found(drive, user):
    other = drive.new_user()
    assert drive.request("PUT", f"/files/{user[0]}/private.txt", auth=user, body=b"secret").status == 201
    for method, path in (("PROPFIND", f"/files/{user[0]}/"), ("GET", f"/files/{user[0]}/private.txt"),
                         ("PUT", f"/files/{user[0]}/intruder.txt"), ("DELETE", f"/files/{user[0]}/private.txt"),
                         ("MKCOL", f"/files/{user[0]}/intruder")):
        reply = drive.request(method, path, auth=other, headers={"Depth": "0"}, body=b"x" if method == "PUT" else None)
        assert reply.status in (403, 404, 409), (method, path, reply.status)
    # …and nothing changed.
    assert drive.request("GET", f"/files/{user[0]}/private.txt", auth=user).body == b"secret"
    assert drive.request("GET", f"/files/{user[0]}/intruder.txt", auth=user).status == 404
    listing = drive.request("PROPFIND", "/files/", auth=other, headers={"Depth": "1"})
    assert f"/files/{user[0]}/" not in drive.multistatus(listing.body)


def test_plan_without_webdav_gets_403_with_a_reason(drive):
    free_user = drive.new_user(plan="free")
    reply = drive.request("PROPFIND", f"/files/{free_user[0]}/", auth=free_user, headers={"Depth": "0"})
    assert reply.status == 403
    assert b"WebDAV" in reply.body


def test_options_advertises_dav_class_2(drive, user):
    reply = drive.request("OPTIONS", f"/files/{user[0]}/", auth=user)
    assert reply.status == 200
    assert "2" in reply.headers["DAV"].replace(" ", "").split(",")
    assert "PROPFIND" in reply.headers["Allow"]


def test_browser_gets_an_html_listing_and_slash_redirects_keep_the_mount(drive, user):
    login = user[0]
    bare = drive.request("GET", f"/files/{login}", auth=user)
    assert bare.status == 301
    assert bare.headers["Location"].endswith(f"/files/{login}/")
    page = drive.request("GET", f"/files/{login}/", auth=user)
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert b"Drop folder" in page.body
    assert drive.request("GET", "/files", auth=user).headers["Location"].endswith("/files/")


def test_rfc7617_4_basic_password_refused_over_plain_http_unless_loopback_is_allowed(start_server):
    import http.client
    import ssl

    server = start_server(KANTOOR_AUTH_ALLOW_PLAINTEXT_ON_LOOPBACK="false")
    login, password = server.make_user()
    token = base64.b64encode(f"{login}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Depth": "0"}
    plain = http.client.HTTPConnection(server.host, server.ports["http"], timeout=30)
    plain.request("PROPFIND", f"/files/{login}/", headers=headers)
    reply = plain.getresponse()
    assert reply.status == 403 and b"https" in reply.read()
    context = ssl.create_default_context(cafile=str(server.certificate))
    context.check_hostname = False
    secure = http.client.HTTPSConnection(server.host, server.ports["https"], timeout=30, context=context)
    secure.request("PROPFIND", f"/files/{login}/", headers=headers)
    assert secure.getresponse().status == 207


def test_changed_password_and_disabled_account_stop_working_within_a_second(server, drive, user):
    """A fully checked Authorization header is let through again for REVERIFY_SECONDS without the
    throttle and account reads (kantoor.davserver.files.authentication); after that it is checked again."""
    import secrets
    import time

    from harness import wait_until

    from kantoor.auth import hash_password
    from kantoor.davserver.files.authentication import REVERIFY_SECONDS

    assert REVERIFY_SECONDS <= 1.0

    def status(auth):  # type: ignore[no-untyped-def]
        return drive.request("PROPFIND", f"/files/{user[0]}/", auth=auth, headers={"Depth": "0"}).status

    assert status(user) == 207
    store = server.core().store
    new_password = "pw-" + secrets.token_urlsafe(12)
    store.update_account(user[0], password_hash=hash_password(new_password))
    changed = time.monotonic()
    wait_until(lambda: status(user) == 401, timeout=10)
    assert time.monotonic() - changed < REVERIFY_SECONDS + 4.0  # slack for a loaded machine
    renewed = (user[0], new_password)
    assert status(renewed) == 207
    store.update_account(user[0], state="disabled")
    disabled = time.monotonic()
    wait_until(lambda: status(renewed) in (401, 403), timeout=10)
    assert time.monotonic() - disabled < REVERIFY_SECONDS + 4.0  # slack for a loaded machine
