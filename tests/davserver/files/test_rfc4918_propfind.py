"""RFC 4918 §9.1 PROPFIND on the drive: the listing, the user's root, live properties, finite depth."""

from __future__ import annotations

DAV = "{DAV:}"
ALLPROP = b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'


def test_propfind_on_files_lists_only_the_users_own_drive(drive, user):
    reply = drive.request("PROPFIND", "/files/", auth=user, headers={"Depth": "1"}, body=ALLPROP)
    assert reply.status == 207
    hrefs = set(drive.multistatus(reply.body))
    assert hrefs == {"/files/", f"/files/{user[0]}/"}


def test_propfind_on_drive_root_shows_drop_folder_as_collection(drive, user):
    reply = drive.request("PROPFIND", f"/files/{user[0]}/", auth=user, headers={"Depth": "1"})
    assert reply.status == 207
    found = drive.multistatus(reply.body)
    drop = found[f"/files/{user[0]}/Drop folder/"]
    assert drop[DAV + "resourcetype"].find(DAV + "collection") is not None
    assert DAV + "getlastmodified" in drop and DAV + "creationdate" in drop


def test_propfind_depth_zero_returns_only_the_resource(drive, user):
    reply = drive.request("PROPFIND", f"/files/{user[0]}/", auth=user, headers={"Depth": "0"})
    assert reply.status == 207
    assert list(drive.multistatus(reply.body)) == [f"/files/{user[0]}/"]


def test_propfind_depth_infinity_is_refused_with_precondition(drive, user):
    for headers in ({"Depth": "infinity"}, {}):  # no Depth header means infinity (§9.1)
        reply = drive.request("PROPFIND", f"/files/{user[0]}/", auth=user, headers=headers)
        assert reply.status == 403
        assert b"propfind-finite-depth" in reply.body


def test_file_live_properties(drive, user):
    login = user[0]
    assert drive.request("PUT", f"/files/{login}/notes.txt", auth=user, body=b"hello drive",
                         headers={"Content-Type": "text/plain"}).status == 201
    reply = drive.request("PROPFIND", f"/files/{login}/notes.txt", auth=user, headers={"Depth": "0"})
    assert reply.status == 207
    props = drive.multistatus(reply.body)[f"/files/{login}/notes.txt"]
    assert props[DAV + "getcontentlength"].text == "11"
    assert props[DAV + "getcontenttype"].text.startswith("text/plain")
    etag = props[DAV + "getetag"].text
    assert etag.startswith('"') and etag.endswith('"')  # an entity-tag keeps its quotes (§15.6)
    assert drive.request("HEAD", f"/files/{login}/notes.txt", auth=user).headers["ETag"] == etag
    assert props[DAV + "getlastmodified"].text.endswith("GMT")
    assert props[DAV + "creationdate"].text
    assert props[DAV + "resourcetype"].find(DAV + "collection") is None


def test_malformed_propfind_body_is_400(drive, user):
    reply = drive.request("PROPFIND", f"/files/{user[0]}/", auth=user, headers={"Depth": "0"},
                          body=b"<D:propfind xmlns:D='DAV:'><D:prop>")
    assert reply.status == 400


def test_xml_entities_are_not_expanded(drive, user):
    body = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>&x;</D:displayname></D:prop></D:propfind>')
    reply = drive.request("PROPFIND", f"/files/{user[0]}/", auth=user, headers={"Depth": "0"}, body=body)
    assert reply.status in (207, 400)
    assert b"root:" not in reply.body


def test_oversized_xml_body_is_413(drive, user):
    body = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>' + b"<D:x/>" * 200_000 + b"</D:prop></D:propfind>"
    reply = drive.request("PROPFIND", f"/files/{user[0]}/", auth=user, headers={"Depth": "0"}, body=body)
    assert reply.status == 413
