"""RFC 4918 §9.9 MOVE on the drive: a rename in place (same item, same folder rows), not copy + delete."""

from __future__ import annotations

DAV = "{DAV:}"


def props(drive, user, path: str) -> dict:
    reply = drive.request("PROPFIND", path, auth=user, headers={"Depth": "0"})
    assert reply.status == 207, (path, reply.status)
    return next(iter(drive.multistatus(reply.body).values()))


def test_move_file_keeps_etag_and_creation_date(drive, user):
    base = f"/files/{user[0]}"
    drive.request("PUT", f"{base}/draft.txt", auth=user, body=b"draft")
    before = props(drive, user, f"{base}/draft.txt")
    moved = drive.request("MOVE", f"{base}/draft.txt", auth=user, headers={"Destination": f"{base}/final.txt"})
    assert moved.status == 201
    after = props(drive, user, f"{base}/final.txt")
    assert after[DAV + "getetag"].text == before[DAV + "getetag"].text
    assert after[DAV + "creationdate"].text == before[DAV + "creationdate"].text
    assert drive.request("GET", f"{base}/draft.txt", auth=user).status == 404


def test_move_folder_renames_the_whole_subtree(drive, user):
    base = f"/files/{user[0]}"
    drive.request("MKCOL", f"{base}/old", auth=user)
    drive.request("MKCOL", f"{base}/old/inner", auth=user)
    drive.request("PUT", f"{base}/old/inner/deep.txt", auth=user, body=b"deep")
    drive.request("MKCOL", f"{base}/target", auth=user)
    moved = drive.request("MOVE", f"{base}/old/", auth=user, headers={"Destination": f"{base}/target/new/"})
    assert moved.status == 201
    assert drive.request("GET", f"{base}/target/new/inner/deep.txt", auth=user).body == b"deep"
    assert drive.request("PROPFIND", f"{base}/old/", auth=user, headers={"Depth": "0"}).status == 404
    # The renamed folder takes new children at its new place.
    assert drive.request("MKCOL", f"{base}/target/new/inner/more", auth=user).status == 201


def test_move_overwrite_rules(drive, user):
    base = f"/files/{user[0]}"
    drive.request("PUT", f"{base}/one.txt", auth=user, body=b"one")
    drive.request("PUT", f"{base}/two.txt", auth=user, body=b"two")
    refused = drive.request("MOVE", f"{base}/one.txt", auth=user,
                            headers={"Destination": f"{base}/two.txt", "Overwrite": "F"})
    assert refused.status == 412
    replaced = drive.request("MOVE", f"{base}/one.txt", auth=user, headers={"Destination": f"{base}/two.txt"})
    assert replaced.status == 204
    assert drive.request("GET", f"{base}/two.txt", auth=user).body == b"one"


def test_drop_folder_and_root_cannot_be_moved(drive, user):
    base = f"/files/{user[0]}"
    reply = drive.request("MOVE", f"{base}/Drop folder/", auth=user, headers={"Destination": f"{base}/Renamed/"})
    assert reply.status == 403
    assert props(drive, user, f"{base}/Drop folder/")


def test_moving_a_file_needs_no_free_capacity(tiny_drive):
    # The tiny plan holds 100 000 bytes: a 60 000-byte file could not be copied, only renamed.
    user = tiny_drive.new_user(plan="tiny")
    base = f"/files/{user[0]}"
    assert tiny_drive.request("PUT", f"{base}/big.bin", auth=user, body=b"b" * 60000).status == 201
    moved = tiny_drive.request("MOVE", f"{base}/big.bin", auth=user,
                               headers={"Destination": f"{base}/Drop%20folder/big.bin"})
    assert moved.status == 201
    assert len(tiny_drive.request("GET", f"{base}/Drop folder/big.bin", auth=user).body) == 60000
