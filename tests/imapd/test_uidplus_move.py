"""RFC 4315 UIDPLUS (UID EXPUNGE, COPYUID), RFC 6851 MOVE, RFC 3501 6.3.5 RENAME, RFC 9208 QUOTA/[OVERQUOTA]."""

from __future__ import annotations

import re

import pytest

MESSAGE = b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n"


def _fill(raw_session, box: str, count: int, flags: str = "") -> None:  # type: ignore[no-untyped-def]
    for n in range(count):
        body = MESSAGE + b"%d\r\n" % n
        reply = raw_session.command(f'APPEND "{box}" ({flags}) {{{len(body)}+}}'.encode() + b"\r\n" + body)
        assert b"OK [APPENDUID" in reply[-1], reply


def test_uid_expunge_removes_only_the_listed_uids_rfc4315_2_1(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    _fill(session, folder, 4, "\\Deleted")
    assert b"UIDPLUS" in session.command("CAPABILITY")[0]
    session.command(f'SELECT "{folder}"')
    reply = session.command("UID EXPUNGE 2:3")
    assert reply == [b"* 3 EXPUNGE", b"* 2 EXPUNGE", reply[-1]] and reply[-1].split()[1] == b"OK"
    assert session.command("UID SEARCH ALL")[0] == b"* SEARCH 1 4"
    assert session.command("UID EXPUNGE 2:3")[-1].split()[1] == b"OK"  # nothing left to remove
    reply = session.command("EXPUNGE")
    assert reply[:2] == [b"* 2 EXPUNGE", b"* 1 EXPUNGE"]


def test_move_answers_copyuid_then_expunge_rfc6851_4_3(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    session.command(f'CREATE "{folder}/target"')
    _fill(session, folder, 3)
    assert b"MOVE" in session.command("CAPABILITY")[0]
    session.command(f'SELECT "{folder}"')
    reply = session.command(f'MOVE 1:2 "{folder}/target"')
    validity = re.search(rb"\* OK \[COPYUID (\d+) 1,2 1,2\]", reply[0])
    assert validity, reply
    assert reply[1:3] == [b"* 2 EXPUNGE", b"* 1 EXPUNGE"] and reply[-1].split()[1] == b"OK"
    reply = session.command(f'UID MOVE 3 "{folder}/target"')
    assert reply[0].startswith(b"* OK [COPYUID %s 3 3]" % validity.group(1)) and reply[1] == b"* 1 EXPUNGE"
    assert session.command(f'STATUS "{folder}/target" (MESSAGES UIDNEXT)')[0].endswith(b"(MESSAGES 3 UIDNEXT 4)")
    reply = session.command('MOVE 1 "Nowhere"')
    assert b"[TRYCREATE]" in reply[-1]


def test_move_is_seen_by_a_second_session_watching_the_source_rfc6851_and_rfc2177(  # type: ignore[no-untyped-def]
        server, user, folder, raw) -> None:
    from imapclient import IMAPClient

    mover = raw(user)
    _fill(mover, folder, 2)
    with IMAPClient(server.host, port=server.ports["imap"], ssl=False, timeout=30) as watcher:
        watcher.login(*user)
        watcher.select_folder(folder)
        watcher.idle()
        mover.command(f'SELECT "{folder}"')
        mover.command('UID MOVE 1 "Archive"')
        responses = watcher.idle_check(timeout=10)
        watcher.idle_done()
        assert (1, b"EXPUNGE") in responses
        assert watcher.search("ALL") == [2]


def test_imapclient_move_and_copy_report_new_uids(server, user, folder) -> None:  # type: ignore[no-untyped-def]
    from imapclient import IMAPClient

    with IMAPClient(server.host, port=server.ports["imap"], ssl=False, timeout=30) as client:
        client.login(*user)
        client.create_folder(folder + "/b")
        for _ in range(3):
            client.append(folder, MESSAGE, flags=[b"\\Flagged"])
        client.select_folder(folder)
        assert client.has_capability("MOVE") and client.has_capability("UIDPLUS")
        client.copy([1, 2, 3], folder + "/b")
        client.move([2], folder + "/b")
        assert client.search("ALL") == [1, 3]
        client.select_folder(folder + "/b")
        assert client.search("ALL") == [1, 2, 3, 4]
        assert all(b"\\Flagged" in flags for flags in client.get_flags([1, 2, 3, 4]).values())
        client.delete_messages([1, 4])
        client.uid_expunge([4])
        assert client.search("ALL") == [1, 2, 3]


def test_rename_keeps_messages_and_children_rfc3501_6_3_5(connect, user, folder, message) -> None:  # type: ignore[no-untyped-def]
    client = connect(user)
    client.create(f"{folder}/child")
    client.append(folder, None, None, message)
    assert client.rename(folder, f"{folder}-new/level")[0] == "OK"
    listing = b"\n".join(client.list('""', f"{folder}*")[1])
    assert f'"{folder}-new/level/child"'.encode() in listing
    assert f'"{folder}"'.encode() not in listing
    assert client.status(f"{folder}-new/level", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 1)")
    typ, data = client.rename("Nowhere", "Elsewhere")
    assert typ == "NO" and b"NONEXISTENT" in data[0]
    typ, data = client.rename(f"{folder}-new/level", "Archive")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    assert client.rename("Sent", "INBOX")[0] == "NO"


def test_rename_inbox_moves_its_messages_rfc3501_6_3_5(connect, fresh_user, message) -> None:  # type: ignore[no-untyped-def]
    client = connect(fresh_user)
    client.append("INBOX", None, None, message)
    client.append("INBOX", None, None, message)
    assert client.rename("INBOX", "\"Old INBOX\"")[0] == "OK"
    assert client.select("INBOX")[1] == [b"0"]
    assert client.select('"Old INBOX"')[1] == [b"2"]


def test_getquotaroot_reports_storage_in_kib_rfc9208_4_3(raw, user) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)
    assert b"QUOTA=RES-STORAGE" in session.command("CAPABILITY")[0]
    reply = session.command("GETQUOTAROOT INBOX")
    assert reply[0] == b'* QUOTAROOT "INBOX" ""'
    match = re.fullmatch(rb'\* QUOTA "" \(STORAGE (\d+) (\d+)\)', reply[1])
    assert match and int(match.group(2)) > int(match.group(1))
    assert session.command('GETQUOTA ""')[0] == reply[1]
    assert session.command('GETQUOTA "other"')[-1].split()[1] == b"NO"
    assert session.command('SETQUOTA "" (STORAGE 10)')[-1].split()[1] == b"NO"


def test_copy_and_move_over_quota_store_nothing_rfc9208_and_rfc5530(policy_server, trusting) -> None:  # type: ignore[no-untyped-def]
    import imaplib

    imaplib.Commands.setdefault("MOVE", ("SELECTED",))
    credentials = policy_server.make_user("copier@localhost", "tiny")  # 3000 bytes of mail
    client = imaplib.IMAP4_SSL(policy_server.host, policy_server.ports["imaps"],
                               ssl_context=trusting(policy_server), timeout=30)
    try:
        client.login(*credentials)
        body = b"Subject: q\r\n\r\n" + b"q" * 900
        for _ in range(2):
            assert client.append("INBOX", None, None, body)[0] == "OK"
        client.select("INBOX")
        typ, data = client.copy("1:2", "Archive")
        assert typ == "NO" and b"[OVERQUOTA]" in data[0]
        assert client.status("Archive", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 0)")
        # A move between one's own mailboxes needs no extra room.
        typ, data = client._simple_command("MOVE", "1:2", "Archive")
        assert typ == "OK", data
        assert client.status("Archive", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 2)")
        typ, data = client.getquotaroot("Archive")
        assert data[1][0].startswith(b'"" (STORAGE 2 2)')
    finally:
        client.logout()


@pytest.mark.parametrize("name", ["bad*name", "a//b", "x%"])
def test_invalid_mailbox_names_are_refused(connect, user, name) -> None:  # type: ignore[no-untyped-def]
    client = connect(user)
    assert client.create(name)[0] == "NO"
    assert client.rename("Archive", name)[0] == "NO"


def test_a_mailbox_created_again_gets_a_new_uidvalidity_rfc3501_2_3_1_1(raw, user, folder) -> None:  # type: ignore[no-untyped-def]
    session = raw(user)

    def validity() -> int:
        reply = session.command(f'SELECT "{folder}"')
        return int(re.search(rb"\[UIDVALIDITY (\d+)\]", b"\n".join(reply)).group(1))

    first = validity()
    session.command("UNSELECT")
    assert session.command(f'DELETE "{folder}"')[-1].split()[1] == b"OK"
    assert session.command(f'CREATE "{folder}"')[-1].split()[1] == b"OK"
    assert validity() > first
