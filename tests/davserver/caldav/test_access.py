"""Who may reach /dav/: authentication (401), privacy between accounts, the plan's
CalDAV feature gate (403 with a reason), capacity (507) and UTF-8 names."""

from __future__ import annotations

import http.client
import secrets

PROPFIND = b'<propfind xmlns="DAV:"><prop><current-user-principal/><resourcetype/></prop></propfind>'


def test_propfind_on_dav_root_is_207_with_current_user_principal(dav, user):
    reply = dav.request("PROPFIND", "/dav/", user, PROPFIND, {"Depth": "0"})
    assert reply.status == 207
    assert f"<current-user-principal><href>/dav/{user[0].replace('@', '%40')}/</href>" in reply.text


def test_root_depth_1_lists_only_own_principal(dav, user):
    other = dav.new_user()
    reply = dav.request("PROPFIND", "/dav/", user, PROPFIND, {"Depth": "1"})
    assert reply.status == 207
    assert user[0].replace("@", "%40") in reply.text
    assert other[0].replace("@", "%40") not in reply.text


def test_unauthenticated_request_gets_401_with_basic_challenge(dav):
    reply = dav.request("PROPFIND", "/dav/", None, PROPFIND, {"Depth": "0"})
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Basic ")


def test_wrong_password_gets_401(dav, user):
    reply = dav.request("PROPFIND", "/dav/", (user[0], user[1] + "x"), PROPFIND, {"Depth": "0"})
    assert reply.status == 401
    assert "WWW-Authenticate" in reply.headers


def test_other_user_cannot_read_or_write_a_calendar(dav, user, make_event):
    path = f"/dav/{user[0]}/calendar/private.ics"
    assert dav.request("PUT", path, user, make_event("private@example.org"),
                       {"Content-Type": "text/calendar"}).status == 201
    mallory = dav.new_user()
    assert dav.request("GET", path, mallory).status == 403
    assert dav.request("PROPFIND", f"/dav/{user[0]}/calendar/", mallory, PROPFIND, {"Depth": "1"}).status == 403
    assert dav.request("PROPFIND", f"/dav/{user[0]}/", mallory, PROPFIND, {"Depth": "0"}).status == 403
    assert dav.request("PUT", f"/dav/{user[0]}/calendar/evil.ics", mallory, make_event("evil@example.org"),
                       {"Content-Type": "text/calendar"}).status == 403
    assert dav.request("DELETE", path, mallory).status == 403
    assert dav.request("GET", path, user).status == 200


def test_utf8_item_names_round_trip(dav, user, make_event):
    path = f"/dav/{user[0]}/calendar/réunion ☕.ics"
    assert dav.request("PUT", path, user, make_event("utf8@example.org", summary="Café ☕"),
                       {"Content-Type": "text/calendar"}).status == 201
    got = dav.request("GET", path, user)
    assert got.status == 200 and "SUMMARY:Café ☕" in got.text
    listing = dav.request("PROPFIND", f"/dav/{user[0]}/calendar/", user, PROPFIND, {"Depth": "1"})
    assert "r%C3%A9union%20%E2%98%95.ics" in listing.text
    assert dav.request("DELETE", path, user).status == 200


def test_invalid_utf8_path_is_a_client_error(dav, user):
    import base64

    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    conn = http.client.HTTPConnection(dav.host, dav.port, timeout=30)
    try:
        conn.putrequest("GET", f"/dav/{user[0]}/calendar/%FF%FE.ics")
        conn.putheader("Authorization", f"Basic {token}")
        conn.endheaders()
        assert conn.getresponse().status in (400, 404)
    finally:
        conn.close()


def test_plan_without_caldav_gets_403_with_reason_and_quota_gives_507(start_server, dav_of, tmp_path, make_event):
    config = tmp_path / "srv" / "kantoor.toml"
    config.parent.mkdir()
    config.write_text("[plans.nocal]\ncaldav = false\n\n[plans.tiny]\ncaldav = true\ncalendar_bytes = 300\n")
    srv = start_server(data_dir=config.parent / "data")

    def add_user(login: str, plan: str) -> tuple[str, str]:
        password = "pw-" + secrets.token_urlsafe(12)
        srv.cli("--config", str(config), "user", "add", login, "--plan", plan, "--password-stdin",
                stdin=password + "\n")
        return login, password

    dav = dav_of(srv)
    gated = add_user("gated@example.org", "nocal")
    reply = dav.request("PROPFIND", "/dav/", gated, PROPFIND, {"Depth": "0"})
    assert reply.status == 403
    assert "plan" in reply.text.lower() and "caldav" in reply.text.lower()

    small = add_user("small@example.org", "tiny")
    login = small[0]
    assert dav.request("PUT", f"/dav/{login}/calendar/1.ics", small, make_event("one@example.org"),
                       {"Content-Type": "text/calendar"}).status == 201
    full = dav.request("PUT", f"/dav/{login}/calendar/2.ics", small, make_event("two@example.org"),
                       {"Content-Type": "text/calendar"})
    assert full.status == 507
    assert "quota-not-exceeded" in full.text  # RFC 4331 §6
    assert dav.request("GET", f"/dav/{login}/calendar/2.ics", small).status == 404  # nothing stored
    # RFC 4918 §9.8 COPY counts against the same capacity, in the same transaction.
    assert dav.request("MKCALENDAR", f"/dav/{login}/more/", small).status == 201
    copied = dav.request("COPY", f"/dav/{login}/calendar/1.ics", small,
                         headers={"Destination": f"{dav.base_url}{login}/more/1.ics"})
    assert copied.status == 507 and "quota-not-exceeded" in copied.text
    assert dav.request("GET", f"/dav/{login}/more/1.ics", small).status == 404


def test_changed_password_and_disabled_account_stop_working_at_once(server, dav, user):
    assert dav.request("PROPFIND", "/dav/", user, PROPFIND, {"Depth": "0"}).status == 207  # remembered login
    new_password = "pw-" + secrets.token_urlsafe(12)
    server.cli("user", "passwd", user[0], "--password-stdin", stdin=new_password + "\n")
    assert dav.request("PROPFIND", "/dav/", user, PROPFIND, {"Depth": "0"}).status == 401
    renewed = (user[0], new_password)
    assert dav.request("PROPFIND", "/dav/", renewed, PROPFIND, {"Depth": "0"}).status == 207
    server.cli("user", "disable", user[0])
    assert dav.request("PROPFIND", "/dav/", renewed, PROPFIND, {"Depth": "0"}).status in (401, 403)


def _authorization(auth: tuple[str, str]) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


def test_body_over_the_limit_is_413_before_it_is_read(dav, user):
    conn = http.client.HTTPConnection(dav.host, dav.port, timeout=30)
    try:
        conn.putrequest("PUT", f"/dav/{user[0]}/calendar/huge.ics")
        conn.putheader("Authorization", _authorization(user))
        conn.putheader("Content-Type", "text/calendar")
        conn.putheader("Content-Length", str(500 * 1024 * 1024))
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_chunked_put_is_accepted(dav, user, make_event):
    body = make_event("chunked@example.org")
    conn = http.client.HTTPConnection(dav.host, dav.port, timeout=30)
    try:
        conn.request("PUT", f"/dav/{user[0]}/calendar/chunked.ics", body=iter([body[:40], body[40:]]),
                     headers={"Authorization": _authorization(user), "Content-Type": "text/calendar"},
                     encode_chunked=True)
        assert conn.getresponse().status == 201
    finally:
        conn.close()
    assert "UID:chunked@example.org" in dav.request("GET", f"/dav/{user[0]}/calendar/chunked.ics", user).text


def test_forwarded_headers_keep_paths_that_start_like_the_mount_point(dav):
    login, password = dav.make_user(f"dav{secrets.token_hex(3)}@example.org", None, "standard")
    reply = dav.request("PROPFIND", f"/dav/{login}/", (login, password), PROPFIND,
                        {"Depth": "0", "X-Forwarded-For": "192.0.2.1", "X-Forwarded-Proto": "http"})
    assert reply.status == 207
    assert f"<href>/dav/{login.replace('@', '%40')}/</href>" in reply.text
