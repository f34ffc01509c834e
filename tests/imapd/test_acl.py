"""RFC 4314 ACL: MYRIGHTS, GETACL, LISTRIGHTS, SETACL, DELETEACL on the one ACL engine (kantoor.auth.acl)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def friend(server):  # type: ignore[no-untyped-def]
    return server.make_user()


def test_owner_has_every_right_rfc4314_3_5_myrights(raw, user) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    caps = session.command("CAPABILITY")[0]
    assert b" ACL" in caps and b"RIGHTS=texk" in caps
    assert session.command("MYRIGHTS INBOX")[0] == b"* MYRIGHTS INBOX lrswipkxtecda"
    assert session.command("MYRIGHTS Nowhere")[-1].split()[1] == b"NO"


def test_setacl_getacl_deleteacl_rfc4314_3_1_to_3_3(raw, user, friend, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    assert session.command(f'SETACL "{folder}" "{friend[0]}" lr')[-1].split()[1] == b"OK"
    acl = session.command(f'GETACL "{folder}"')[0]
    assert acl == f'* ACL "{folder}" "{user[0]}" lrswipkxtecda "{friend[0]}" lrs'.encode()
    session.command(f'SETACL "{folder}" "{friend[0]}" +w')  # tied with the other write rights
    assert f'"{friend[0]}" lrswipkxtecd'.encode() in session.command(f'GETACL "{folder}"')[0]
    session.command(f'SETACL "{folder}" "{friend[0]}" -t')
    assert f'"{friend[0]}" lrs'.encode() in session.command(f'GETACL "{folder}"')[0]
    assert session.command(f'DELETEACL "{folder}" "{friend[0]}"')[-1].split()[1] == b"OK"
    assert friend[0].encode() not in session.command(f'GETACL "{folder}"')[0]
    assert session.command(f'SETACL "{folder}" "{user[0]}" r')[-1].split()[1] == b"NO"  # the owner stays owner
    assert session.command(f'SETACL "{folder}" "nobody@nowhere" r')[-1].split()[1] == b"NO"
    assert session.command(f'SETACL "{folder}" "{friend[0]}" lr!')[-1].split()[1] == b"BAD"


def test_listrights_and_a_bind_only_grant_rfc4314_3_4(raw, user, friend, folder) -> None:  # type: ignore[no-untyped-def]
    owner = raw(user)
    reply = owner.command(f'LISTRIGHTS "{folder}" "{friend[0]}"')
    assert reply[0].endswith(b'"" lrs i wpkxtecd a')
    assert owner.command(f'SETACL "{folder}" "{friend[0]}" i')[-1].split()[1] == b"OK"
    assert f'"{friend[0]}" i'.encode() in owner.command(f'GETACL "{folder}"')[0]  # bind: may only add mail
