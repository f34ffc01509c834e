"""What one mount point shows besides the user's files: Groups/, Shared with me/, and others' Drop folders.

Groups are made with the ``kantoor group`` CLI; shares (no CLI yet) are granted through the Store
of the running server's own database, opened from the test process.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from harness import make_settings

from kantoor.core import open_core

PROPPATCH = (b'<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:example"><D:set><D:prop><Z:x>1</Z:x></D:prop>'
             b"</D:set></D:propertyupdate>")
LOCKINFO = (b'<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/>'
            b"</D:locktype></D:lockinfo>")


@pytest.fixture(scope="module")
def server_core(server):  # type: ignore[no-untyped-def]
    """The server's own database (the real one), for what has no CLI yet: grants."""
    opened = open_core(make_settings(Path(server.data_dir)), migrate=False)
    yield opened
    opened.close()


def new_group(server, admin: str, *members: tuple[str, bool]) -> str:  # type: ignore[no-untyped-def]
    name = f"team {secrets.token_hex(3)}"
    server.cli("group", "create", name, admin)
    for login, can_write in members:
        server.cli("group", "add-member", name, login, *(["--write"] if can_write else []))
    return name


def names_in(drive, path: str, auth) -> set[str]:  # type: ignore[no-untyped-def]
    reply = drive.request("PROPFIND", path, auth=auth, headers={"Depth": "1"})
    assert reply.status == 207, (path, reply.status)
    prefix = path.rstrip("/") + "/"
    return {href[len(prefix):].rstrip("/") for href in drive.multistatus(reply.body) if href != prefix}


def quota_used(drive, path: str, auth) -> int:  # type: ignore[no-untyped-def]
    reply = drive.request("PROPFIND", path, auth=auth, headers={"Depth": "0"},
                          body=b'<D:propfind xmlns:D="DAV:"><D:prop><D:quota-used-bytes/></D:prop></D:propfind>')
    props = next(iter(drive.multistatus(reply.body).values()))
    return int(props["{DAV:}quota-used-bytes"].text)


def test_group_drive_members_read_and_writers_write(drive, server):
    admin, reader, writer, outsider = (drive.new_user() for _ in range(4))
    group = new_group(server, admin[0], (reader[0], False), (writer[0], True))
    own = f"/files/{admin[0]}/Groups/{group}"
    assert drive.request("PUT", f"{own}/plan.txt", auth=admin, body=b"the plan").status == 201
    assert group in names_in(drive, f"/files/{reader[0]}/Groups/", reader)
    mine = f"/files/{reader[0]}/Groups/{group}"
    assert names_in(drive, mine, reader) == {"plan.txt"}
    assert drive.request("GET", f"{mine}/plan.txt", auth=reader).body == b"the plan"
    # A member without write may read only.
    assert drive.request("PUT", f"{mine}/plan.txt", auth=reader, body=b"mine now").status == 403
    assert drive.request("PUT", f"{mine}/new.txt", auth=reader, body=b"x").status == 403
    assert drive.request("DELETE", f"{mine}/plan.txt", auth=reader).status == 403
    assert drive.request("MKCOL", f"{mine}/sub", auth=reader).status == 403
    assert drive.request("LOCK", f"{mine}/plan.txt", auth=reader, body=LOCKINFO).status == 403
    patched = drive.request("PROPPATCH", f"{mine}/plan.txt", auth=reader, body=PROPPATCH)
    assert patched.status == 403 or b"403 Forbidden" in patched.body
    # A member the administrator allowed to write, writes.
    theirs = f"/files/{writer[0]}/Groups/{group}"
    assert drive.request("PUT", f"{theirs}/notes.txt", auth=writer, body=b"notes").status == 201
    assert drive.request("MKCOL", f"{theirs}/sub", auth=writer).status == 201
    assert drive.request("DELETE", f"{theirs}/notes.txt", auth=writer).status == 204
    assert drive.request("GET", f"{mine}/plan.txt", auth=admin).status == 404  # URLs are per mount point
    # Not a member: no such group drive.
    assert drive.request("PROPFIND", f"/files/{outsider[0]}/Groups/{group}/", auth=outsider,
                         headers={"Depth": "0"}).status == 404
    assert group not in names_in(drive, f"/files/{outsider[0]}/Groups/", outsider)


def test_rfc4331_group_drive_usage_counts_against_the_group(drive, server):
    admin = drive.new_user()
    group = new_group(server, admin[0])
    before = quota_used(drive, f"/files/{admin[0]}/", admin)
    assert drive.request("PUT", f"/files/{admin[0]}/Groups/{group}/big.bin", auth=admin,
                         body=b"x" * 5000).status == 201
    assert quota_used(drive, f"/files/{admin[0]}/Groups/{group}/", admin) == 5000
    assert quota_used(drive, f"/files/{admin[0]}/", admin) == before


def test_shared_with_me_shows_shares_and_a_revoked_share_disappears_at_once(drive, server, server_core):
    owner, member, outsider = (drive.new_user() for _ in range(3))
    group = new_group(server, owner[0], (member[0], False))
    base = f"/files/{owner[0]}"
    drive.request("MKCOL", f"{base}/project", auth=owner)
    drive.request("PUT", f"{base}/project/spec.txt", auth=owner, body=b"spec")
    drive.request("PUT", f"{base}/single.txt", auth=owner, body=b"single")
    store = server_core.store
    owner_account = store.get_account(owner[0])
    group_principal = store.get_group(group).principal_id
    project = store.find_collection(owner_account.principal_id, "folder", "project", owner_account.principal_id)
    root = store.find_collection(owner_account.principal_id, "folder", "", owner_account.principal_id)
    single = store.get_item(root.id, "single.txt", owner_account.principal_id)
    store.grant(project.id, None, group_principal, "read", actor=owner_account.principal_id)
    store.grant(None, single.id, group_principal, "read", actor=owner_account.principal_id)

    shared = f"/files/{member[0]}/Shared with me"
    assert names_in(drive, shared, member) == {"project", "single.txt"}
    assert drive.request("GET", f"{shared}/project/spec.txt", auth=member).body == b"spec"
    assert drive.request("GET", f"{shared}/single.txt", auth=member).body == b"single"
    assert drive.request("PUT", f"{shared}/project/spec.txt", auth=member, body=b"changed").status == 403
    assert drive.request("DELETE", f"{shared}/project", auth=member).status == 403
    assert names_in(drive, f"/files/{outsider[0]}/Shared with me", outsider) == set()
    assert drive.request("GET", f"/files/{outsider[0]}/Shared with me/project/spec.txt", auth=outsider).status == 404

    # The grant changed to write: the member writes.
    store.grant(project.id, None, group_principal, "write", actor=owner_account.principal_id)
    assert drive.request("PUT", f"{shared}/project/spec.txt", auth=member, body=b"v2").status == 204
    assert drive.request("GET", f"{base}/project/spec.txt", auth=owner).body == b"v2"

    # Revoked: gone at once, listing and URL alike.
    store.revoke(project.id, None, group_principal, actor=owner_account.principal_id)
    assert names_in(drive, shared, member) == {"single.txt"}
    assert drive.request("GET", f"{shared}/project/spec.txt", auth=member).status == 404
    store.revoke(None, single.id, group_principal, actor=owner_account.principal_id)
    assert drive.request("GET", f"{shared}/single.txt", auth=member).status == 404


def test_drop_folder_members_add_files_but_cannot_list_read_replace_or_delete(drive, server):
    owner, member, outsider = (drive.new_user() for _ in range(3))
    new_group(server, owner[0], (member[0], False))
    drop = f"/files/{owner[0]}/Drop folder"
    assert drive.request("PUT", f"{drop}/note.txt", auth=member, body=b"first").status == 201
    # A name collision gets a new unique name instead of overwriting.
    assert drive.request("PUT", f"{drop}/note.txt", auth=member, body=b"second").status in (201, 204)
    assert drive.request("PUT", f"{drop}/note.txt", auth=member, body=b"third").status in (201, 204)
    assert names_in(drive, drop, owner) == {"note.txt", "note (2).txt", "note (3).txt"}
    assert drive.request("GET", f"{drop}/note.txt", auth=owner).body == b"first"
    assert drive.request("GET", f"{drop}/note (3).txt", auth=owner).body == b"third"
    # Everything but adding is refused to the member.
    for method, path in (("GET", f"{drop}/note.txt"), ("HEAD", f"{drop}/note.txt"), ("PROPFIND", drop),
                         ("PROPFIND", f"{drop}/note.txt"), ("DELETE", f"{drop}/note.txt"), ("MKCOL", f"{drop}/sub"),
                         ("LOCK", f"{drop}/note.txt"), ("PROPPATCH", f"{drop}/note.txt"), ("DELETE", drop),
                         ("MOVE", f"{drop}/note.txt"), ("COPY", f"{drop}/note.txt")):
        headers = {"Depth": "1"} if method == "PROPFIND" else {}
        if method in ("MOVE", "COPY"):
            headers["Destination"] = f"http://{drive.host}:{drive.port}/files/{member[0]}/stolen.txt"
        reply = drive.request(method, path, auth=member, headers=headers,
                              body=LOCKINFO if method == "LOCK" else PROPPATCH if method == "PROPPATCH" else None)
        assert reply.status == 403, (method, path, reply.status)
    assert drive.request("GET", f"/files/{member[0]}/stolen.txt", auth=member).status == 404
    # No common group: not even the folder is there.
    assert drive.request("PUT", f"{drop}/spam.txt", auth=outsider, body=b"spam").status in (404, 409)
    assert "spam.txt" not in names_in(drive, drop, owner)
    # The owner has every right.
    assert drive.request("PUT", f"{drop}/note.txt", auth=owner, body=b"replaced").status == 204
    assert drive.request("DELETE", f"{drop}/note (2).txt", auth=owner).status == 204


def test_mount_point_lists_groups_and_shared_with_me_and_reserves_their_names(drive, user):
    root = f"/files/{user[0]}"
    assert {"Groups", "Shared with me", "Drop folder"} <= names_in(drive, root + "/", user)
    assert drive.request("MKCOL", f"{root}/Groups", auth=user).status == 405
    assert drive.request("PUT", f"{root}/Groups/x.txt", auth=user, body=b"x").status == 403
    assert drive.request("MKCOL", f"{root}/Shared with me/x", auth=user).status == 403
    assert drive.request("DELETE", f"{root}/Groups", auth=user).status == 403
    drive.request("MKCOL", f"{root}/folder", auth=user)
    reply = drive.request("MOVE", f"{root}/folder", auth=user,
                          headers={"Destination": f"http://{drive.host}:{drive.port}{root}/Groups"})
    assert reply.status in (403, 409, 412)


def test_rfc4918_6_a_lock_binds_every_member_whatever_url_reaches_the_file(drive, server):
    admin, writer = drive.new_user(), drive.new_user()
    group = new_group(server, admin[0], (writer[0], True))
    theirs = f"/files/{admin[0]}/Groups/{group}/doc.txt"
    mine = f"/files/{writer[0]}/Groups/{group}/doc.txt"
    assert drive.request("PUT", theirs, auth=admin, body=b"v1").status == 201
    locked = drive.request("LOCK", theirs, auth=admin, body=LOCKINFO, headers={"Timeout": "Second-300"})
    token = locked.headers["Lock-Token"].strip("<>")
    assert drive.request("PUT", mine, auth=writer, body=b"v2").status == 423
    assert drive.request("DELETE", mine, auth=writer).status == 423
    # The writer sees the lock, with its root at the URL they use.
    found = drive.request("PROPFIND", mine, auth=writer, headers={"Depth": "0"},
                          body=b'<D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>')
    assert token.encode() in found.body
    assert f"/files/{writer[0]}/Groups/".encode() in found.body.replace(b"%40", b"@").replace(b"%20", b" ")
    assert drive.request("UNLOCK", theirs, auth=admin, headers={"Lock-Token": f"<{token}>"}).status == 204
    assert drive.request("PUT", mine, auth=writer, body=b"v2").status == 204
