"""``kantoor share add|list|revoke``: sharing drive folders and files with groups from the command line,
checked through what the group's members see over WebDAV (RFC 4918 PROPFIND/GET/PUT on ``Shared with me/``)."""

from __future__ import annotations

import secrets


def new_group(server, admin: str, *members: str) -> str:  # type: ignore[no-untyped-def]
    name = f"share team {secrets.token_hex(3)}"
    server.cli("group", "create", name, admin)
    for login in members:
        server.cli("group", "add-member", name, login)
    return name


def names_in(drive, path: str, auth) -> set[str]:  # type: ignore[no-untyped-def]
    reply = drive.request("PROPFIND", path, auth=auth, headers={"Depth": "1"})
    assert reply.status == 207, (path, reply.status)
    prefix = path.rstrip("/") + "/"
    return {href[len(prefix):].rstrip("/") for href in drive.multistatus(reply.body) if href != prefix}


def _shared(drive, member) -> set[str]:  # type: ignore[no-untyped-def]
    return names_in(drive, f"/files/{member[0]}/Shared with me/", member)


def test_share_a_file_read_only_then_revoke_removes_it_at_once(drive, server):
    owner, member, outsider = (drive.new_user() for _ in range(3))
    group = new_group(server, owner[0], member[0])
    assert drive.request("MKCOL", f"/files/{owner[0]}/Documents", auth=owner).status == 201
    assert drive.request("PUT", f"/files/{owner[0]}/Documents/report.odt", auth=owner, body=b"report").status == 201

    added = server.cli("share", "add", owner[0], "/Documents/report.odt", group, "read")
    assert "/Documents/report.odt is shared with" in added.stdout
    assert server.cli("share", "list", owner[0]).stdout.splitlines() == [f"/Documents/report.odt\t{group}\tread"]
    assert _shared(drive, member) == {"report.odt"}
    shared = f"/files/{member[0]}/Shared with me/report.odt"
    assert drive.request("GET", shared, auth=member).body == b"report"
    assert drive.request("PUT", shared, auth=member, body=b"changed").status == 403
    assert "report.odt" not in _shared(drive, outsider)  # not in the group

    server.cli("share", "revoke", owner[0], "/Documents/report.odt", group)
    # The very next request no longer shows it (grants are read at each request, never cached).
    assert _shared(drive, member) == set()
    assert drive.request("GET", shared, auth=member).status == 404
    assert server.cli("share", "list", owner[0]).stdout == ""
    assert drive.request("GET", f"/files/{owner[0]}/Documents/report.odt", auth=owner).body == b"report"


def test_share_a_folder_for_writing_and_lower_it_to_read(drive, server):
    owner, member = drive.new_user(), drive.new_user()
    group = new_group(server, owner[0], member[0])
    assert drive.request("MKCOL", f"/files/{owner[0]}/Projects", auth=owner).status == 201
    assert drive.request("MKCOL", f"/files/{owner[0]}/Projects/2026", auth=owner).status == 201

    server.cli("share", "add", owner[0], "/Projects", group, "write")
    assert server.cli("share", "list", owner[0]).stdout.splitlines() == [f"/Projects/\t{group}\twrite"]
    assert _shared(drive, member) == {"Projects"}
    inside = f"/files/{member[0]}/Shared with me/Projects/2026/notes.txt"
    assert drive.request("PUT", inside, auth=member, body=b"from the member").status == 201
    assert drive.request("GET", f"/files/{owner[0]}/Projects/2026/notes.txt", auth=owner).body == b"from the member"

    server.cli("share", "add", owner[0], "/Projects/", group, "read")  # the same share, a lower right
    assert server.cli("share", "list", owner[0]).stdout.splitlines() == [f"/Projects/\t{group}\tread"]
    assert drive.request("PUT", inside, auth=member, body=b"again").status == 403
    assert drive.request("GET", inside, auth=member).body == b"from the member"


def test_share_errors_are_one_line_and_change_nothing(drive, server):
    owner, other = drive.new_user(), drive.new_user()
    group = new_group(server, owner[0])
    foreign = new_group(server, other[0])
    assert drive.request("PUT", f"/files/{owner[0]}/a.txt", auth=owner, body=b"a").status == 201

    def error(*args: str) -> str:
        result = server.cli("share", *args, check=False)
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        return result.stderr

    assert "no folder or file /missing.txt" in error("add", owner[0], "/missing.txt", group, "read")
    assert "not the whole drive" in error("add", owner[0], "/", group, "read")
    assert "not a member of the group" in error("add", owner[0], "/a.txt", foreign, "read")
    assert "no group" in error("add", owner[0], "/a.txt", "no such group", "read")
    assert "no account" in error("add", "nobody@example.org", "/a.txt", group, "read")
    assert "not shared with" in error("revoke", owner[0], "/a.txt", group)
    assert server.cli("share", "add", owner[0], "/a.txt", group, "admin", check=False).returncode == 2  # argparse
    assert server.cli("share", "list", owner[0]).stdout == ""
