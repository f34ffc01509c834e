"""RFC 4331 quota properties on the drive, and what happens when a write does not fit (507, 413)."""

from __future__ import annotations

QUOTA_PROPFIND = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>'
                  b'<D:quota-used-bytes/><D:quota-available-bytes/></D:prop></D:propfind>')
DAV = "{DAV:}"


def quota(drive, user) -> tuple[int, int]:
    reply = drive.request("PROPFIND", f"/files/{user[0]}/", auth=user, headers={"Depth": "0"}, body=QUOTA_PROPFIND)
    assert reply.status == 207
    props = drive.multistatus(reply.body)[f"/files/{user[0]}/"]
    return int(props[DAV + "quota-used-bytes"].text), int(props[DAV + "quota-available-bytes"].text)


def test_quota_used_bytes_follows_puts_and_deletes(drive, user):
    used, available = quota(drive, user)
    assert drive.request("PUT", f"/files/{user[0]}/q.bin", auth=user, body=b"q" * 20000).status == 201
    assert quota(drive, user) == (used + 20000, available - 20000)
    assert drive.request("DELETE", f"/files/{user[0]}/q.bin", auth=user).status == 204
    assert quota(drive, user) == (used, available)


def test_allprop_does_not_include_quota_properties(drive, user):
    reply = drive.request("PROPFIND", f"/files/{user[0]}/", auth=user, headers={"Depth": "0"})
    props = drive.multistatus(reply.body)[f"/files/{user[0]}/"]
    assert DAV + "quota-used-bytes" not in props  # RFC 4331 §3


def test_put_beyond_capacity_is_507_and_stores_nothing(tiny_drive):
    user = tiny_drive.new_user(plan="tiny")
    base = f"/files/{user[0]}"
    assert tiny_drive.request("PUT", f"{base}/a.bin", auth=user, body=b"a" * 50000).status == 201
    assert tiny_drive.request("PUT", f"{base}/b.bin", auth=user, body=b"b" * 50000).status == 201
    full = tiny_drive.request("PUT", f"{base}/c.bin", auth=user, body=b"c" * 10)
    assert full.status == 507
    assert b"capacity" in full.body
    assert tiny_drive.request("GET", f"{base}/c.bin", auth=user).status == 404
    assert quota(tiny_drive, user) == (100000, 0)


def test_put_larger_than_the_upload_limit_is_413(tiny_drive):
    user = tiny_drive.new_user(plan="tiny")
    reply = tiny_drive.request("PUT", f"/files/{user[0]}/huge.bin", auth=user, body=b"h" * 70000)
    assert reply.status == 413
    assert tiny_drive.request("GET", f"/files/{user[0]}/huge.bin", auth=user).status == 404
    assert quota(tiny_drive, user)[0] == 0
