"""PROPPATCH and dead properties (RFC 4918 §4, §9.2), stored in the database through the Store."""

from __future__ import annotations

import xml.etree.ElementTree as ET

DAV = "{DAV:}"
WIN = "urn:schemas-microsoft-com:"


def proppatch(drive, path, auth, sets: str = "", removes: str = "", ns: str = 'xmlns:Z="urn:example"'):  # type: ignore[no-untyped-def]
    body = f'<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" {ns}>'
    if sets:
        body += f"<D:set><D:prop>{sets}</D:prop></D:set>"
    if removes:
        body += f"<D:remove><D:prop>{removes}</D:prop></D:remove>"
    body += "</D:propertyupdate>"
    return drive.request("PROPPATCH", path, auth=auth, body=body.encode(), headers={"Content-Type": "application/xml"})


def statuses(reply) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = {}
    for propstat in ET.fromstring(reply.body).iter(DAV + "propstat"):
        status = propstat.findtext(DAV + "status") or ""
        for prop in propstat.find(DAV + "prop") or []:
            out[prop.tag] = status.split(" ")[1]
    return out


def allprop(drive, path, auth):  # type: ignore[no-untyped-def]
    reply = drive.request("PROPFIND", path, auth=auth, headers={"Depth": "0"},
                          body=b'<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>')
    assert reply.status == 207
    return drive.multistatus(reply.body)


def test_rfc4918_9_2_dead_properties_are_stored_and_returned_by_allprop(drive, user):
    path = f"/files/{user[0]}/props.txt"
    drive.request("PUT", path, auth=user, body=b"x")
    reply = proppatch(drive, path, user, sets="<Z:colour>blue</Z:colour><Z:size unit='cm'><Z:w>3</Z:w></Z:size>")
    assert reply.status == 207 and set(statuses(reply).values()) == {"200"}
    props = allprop(drive, path, user)[path]
    assert props["{urn:example}colour"].text == "blue"
    assert props["{urn:example}size"].get("unit") == "cm"
    assert props["{urn:example}size"].find("{urn:example}w").text == "3"
    assert proppatch(drive, path, user, removes="<Z:colour/>").status == 207
    assert "{urn:example}colour" not in allprop(drive, path, user)[path]


def test_rfc4918_9_2_a_proppatch_is_all_or_nothing(drive, user):
    path = f"/files/{user[0]}/atomic.txt"
    drive.request("PUT", path, auth=user, body=b"x")
    reply = proppatch(drive, path, user, sets="<Z:ok>1</Z:ok><D:getetag>forged</D:getetag>")
    got = statuses(reply)
    assert got["{urn:example}ok"] == "424" and got[DAV + "getetag"] == "403"
    assert "{urn:example}ok" not in allprop(drive, path, user)[path]


def test_windows_explorer_win32_properties_are_kept(drive, user):
    path = f"/files/{user[0]}/explorer.docx"
    drive.request("PUT", path, auth=user, body=b"doc")
    reply = proppatch(drive, path, user, ns=f'xmlns:Z="{WIN}"',
                      sets="<Z:Win32CreationTime>Thu, 26 Nov 2026 04:00:00 GMT</Z:Win32CreationTime>"
                           "<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes>")
    assert set(statuses(reply).values()) == {"200"}
    assert allprop(drive, path, user)[path][f"{{{WIN}}}Win32FileAttributes"].text == "00000020"


def test_rfc4918_9_9_move_keeps_and_9_8_copy_copies_dead_properties(drive, user):
    base = f"/files/{user[0]}"
    drive.request("MKCOL", f"{base}/pdir", auth=user)
    drive.request("PUT", f"{base}/pdir/f.txt", auth=user, body=b"x")
    proppatch(drive, f"{base}/pdir/f.txt", user, sets="<Z:tag>file</Z:tag>")
    proppatch(drive, f"{base}/pdir", user, sets="<Z:tag>folder</Z:tag>")
    host = f"http://{drive.host}:{drive.port}"
    assert drive.request("MOVE", f"{base}/pdir", auth=user,
                         headers={"Destination": f"{host}{base}/moved"}).status == 201
    assert allprop(drive, f"{base}/moved", user)[f"{base}/moved/"]["{urn:example}tag"].text == "folder"
    assert allprop(drive, f"{base}/moved/f.txt", user)[f"{base}/moved/f.txt"]["{urn:example}tag"].text == "file"
    assert drive.request("COPY", f"{base}/moved/f.txt", auth=user,
                         headers={"Destination": f"{host}{base}/copy.txt"}).status == 201
    assert allprop(drive, f"{base}/copy.txt", user)[f"{base}/copy.txt"]["{urn:example}tag"].text == "file"


def test_another_user_cannot_set_properties(drive, user):
    path = f"/files/{user[0]}/private-props.txt"
    drive.request("PUT", path, auth=user, body=b"x")
    assert proppatch(drive, path, drive.new_user(), sets="<Z:x>1</Z:x>").status in (403, 404)
