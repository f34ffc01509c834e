"""Shared mail: group mailboxes in the shared namespace and folders shared with a group under other users
(RFC 2342 NAMESPACE), rights from the one ACL engine (RFC 4314), and per-user \\Seen and other system flags,
watched by two members in two sessions (RFC 3501 7.3.1 EXISTS, 7.4.1 EXPUNGE, 7.4.2 FETCH; RFC 2177 IDLE)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from imapclient import IMAPClient

MAIL = b"From: Carol <carol@example.org>\r\nTo: office@example.org\r\nSubject: Team lunch\r\n\r\nFriday at noon.\r\n"


@dataclass
class Office:
    name: str
    principal_id: int
    admin: tuple[str, str]
    reader: tuple[str, str]  # a member without write
    writer: tuple[str, str]  # a member the administrator gave write

    @property
    def mailbox(self) -> str:
        return f"Shared/{self.name}"


@pytest.fixture
def office(server: Any) -> Office:
    admin, reader, writer = server.make_user(), server.make_user(), server.make_user()
    name = f"Office{secrets.token_hex(3)}"
    store = server.core().store
    group = store.create_group(name, admin[0])
    store.add_member(name, reader[0])
    store.add_member(name, writer[0], can_write=True)
    return Office(name, group.principal_id, admin, reader, writer)


@pytest.fixture
def client(server: Any) -> Iterator[Any]:
    """``client(credentials)``: a logged-in imapclient session."""
    opened: list[IMAPClient] = []

    def factory(credentials: tuple[str, str]) -> IMAPClient:
        session = IMAPClient(server.host, port=server.ports["imap"], ssl=False, timeout=30)
        session.login(*credentials)
        opened.append(session)
        return session

    yield factory
    for session in opened:
        try:
            session.logout()
        except Exception:  # noqa: BLE001 - already closed by the test
            pass


def test_namespace_and_list_show_the_group_mailbox_rfc2342_and_rfc3501_6_3_8(client, office) -> None:  # type: ignore[no-untyped-def]
    member = client(office.reader)
    namespaces = member.namespace()
    assert namespaces.personal == (("", "/"),)
    assert namespaces.other == (("Other Users/", "/"),) and namespaces.shared == (("Shared/", "/"),)
    listed = {name: flags for flags, _, name in member.list_folders()}
    assert b"\\Noselect" in listed["Shared"] and b"\\Noselect" not in listed[office.mailbox]
    assert "INBOX" in listed
    top = {name for _, _, name in member.list_folders("", "%")}
    assert "Shared" in top and office.mailbox not in top  # "%" stops at the delimiter


def test_only_writers_may_add_to_the_group_mailbox_and_it_counts_against_the_group_rfc4314_4(  # type: ignore[no-untyped-def]
        server, client, office) -> None:
    reader, writer = client(office.reader), client(office.writer)
    assert reader.getacl  # imapclient speaks ACL
    assert reader._imap.myrights(office.mailbox)[1][0].endswith(b" lrs")
    assert writer._imap.myrights(office.mailbox)[1][0].endswith(b" lrswipkxtecd")
    with pytest.raises(IMAPClient.Error, match="NOPERM"):
        reader.append(office.mailbox, MAIL)
    writer.append(office.mailbox, MAIL)
    client(office.admin).append(office.mailbox, MAIL)
    assert server.core().store.usage(office.principal_id)["mail"] == 2 * len(MAIL)
    info = reader.select_folder(office.mailbox)
    assert info[b"EXISTS"] == 2 and b"READ-WRITE" in info  # read-write: readers keep their own \Seen
    assert list(info[b"PERMANENTFLAGS"]) == [b"\\Seen"]
    with pytest.raises(IMAPClient.Error, match="NOPERM"):
        reader.add_flags([1], [b"\\Flagged"])
    reader.close_folder()  # CLOSE without the right to expunge expunges nothing
    assert client(office.writer).select_folder(office.mailbox)[b"EXISTS"] == 2


def test_two_members_watch_each_other_and_keep_their_own_flags_rfc3501_7_and_rfc2177(client, office) -> None:  # type: ignore[no-untyped-def]
    admin = client(office.admin)
    admin.append(office.mailbox, MAIL, flags=[b"\\Seen"])
    ann, bob = client(office.reader), client(office.writer)
    ann.select_folder(office.mailbox)
    bob.select_folder(office.mailbox)
    assert b"\\Seen" not in ann.get_flags([1])[1]  # the admin's \Seen is theirs

    # New mail reaches both: Bob idles, Ann polls.
    bob.idle()
    admin.append(office.mailbox, MAIL)
    responses = bob.idle_check(timeout=10)
    bob.idle_done()
    assert (2, b"EXISTS") in responses
    assert (2, b"EXISTS") in ann.noop()[1]

    # Ann reads message 2: \Seen for her only; Bob is not told about it and does not see it.
    assert ann.fetch([2], ["BODY[]"])[2][b"BODY[]"] == MAIL
    assert b"\\Seen" in ann.get_flags([2])[2]
    assert not [r for r in bob.noop()[1] if r[1] == b"FETCH"]
    assert b"\\Seen" not in bob.get_flags([2])[2]
    assert ann.search(["SEEN"]) == [2] and bob.search(["SEEN"]) == []
    assert ann.search(["UNSEEN"]) == [1] and bob.search(["UNSEEN"]) == [1, 2]

    # Bob flags and deletes message 1 (his own \Flagged and \Deleted); Ann's view keeps neither.
    bob.add_flags([1], [b"\\Flagged", b"\\Deleted", b"$Lunch"])
    ann_changes = ann.noop()[1]
    assert all(b"\\Flagged" not in str(r).encode() for r in ann_changes)
    flags = ann.get_flags([1])[1]
    assert b"\\Flagged" not in flags and b"\\Deleted" not in flags and b"$Lunch" in flags  # keywords are shared

    # EXPUNGE while Ann has the mailbox selected: she is told at her next command (RFC 3501 7.4.1).
    ann.idle()
    bob.expunge()
    responses = ann.idle_check(timeout=10)
    ann.idle_done()
    assert (1, b"EXPUNGE") in responses
    assert ann.search(["ALL"]) == [2]  # imapclient searches and fetches by UID
    assert b"\\Seen" in ann.get_flags([2])[2] and b"\\Seen" not in bob.get_flags([2])[2]


def test_condstore_modseqs_follow_each_users_own_flags_rfc7162_3_1(client, office) -> None:  # type: ignore[no-untyped-def]
    client(office.admin).append(office.mailbox, MAIL)
    ann, bob = client(office.reader), client(office.writer)
    ann.enable("CONDSTORE")
    bob.enable("CONDSTORE")
    ann.select_folder(office.mailbox)
    bob.select_folder(office.mailbox)
    before = bob.fetch([1], ["MODSEQ"])[1][b"MODSEQ"][0]
    ann.add_flags([1], [b"\\Seen"])
    after_ann = ann.fetch([1], ["MODSEQ"])[1][b"MODSEQ"][0]
    assert after_ann > before
    assert bob.fetch([1], ["MODSEQ"])[1][b"MODSEQ"][0] == before  # Ann's \Seen is not Bob's change
    assert bob.search(["MODSEQ", str(before + 1)]) == []
    assert ann.search(["MODSEQ", str(before + 1)]) == [1]


def test_a_folder_shared_with_a_group_appears_under_other_users_rfc4314_and_rfc2342(client, office) -> None:  # type: ignore[no-untyped-def]
    owner_login = office.admin[0]
    owner = client(office.admin)
    owner.create_folder("Projects")
    owner.append("Projects", MAIL, flags=[b"\\Seen"])
    assert owner._imap.setacl("Projects", f"${office.name}", "lrs")[0] == "OK"
    member = client(office.reader)
    name = f"Other Users/{owner_login}/Projects"
    listed = {n: flags for flags, _, n in member.list_folders()}
    assert name in listed and b"\\Noselect" in listed["Other Users"]
    assert member.select_folder(name, readonly=True)[b"EXISTS"] == 1
    assert member.fetch([1], ["ENVELOPE"])[1][b"ENVELOPE"].subject == b"Team lunch"
    assert b"\\Seen" not in member.get_flags([1])[1]  # the owner's \Seen stays the owner's
    member.unselect_folder()
    member.select_folder(name)
    member.add_flags([1], [b"\\Seen"])
    owner.select_folder("Projects")
    owner.remove_flags([1], [b"\\Seen"])
    assert b"\\Seen" in member.get_flags([1])[1] and b"\\Seen" not in owner.get_flags([1])[1]
    with pytest.raises(IMAPClient.Error, match="NOPERM"):
        member.append(name, MAIL)
    # Revoking the share takes the folder away at once.
    assert owner._imap.deleteacl("Projects", f"${office.name}")[0] == "OK"
    assert name not in {n for _, _, n in client(office.reader).list_folders()}


def test_the_group_mailbox_has_the_groups_quota_root_rfc9208_4_3(client, office) -> None:  # type: ignore[no-untyped-def]
    client(office.writer).append(office.mailbox, MAIL)
    member = client(office.reader)
    reply = member._imap.getquotaroot(office.mailbox)
    assert reply[0] == "OK"
    roots, quotas = reply[1]
    assert roots[0] == f'"{office.mailbox}" "{office.mailbox}"'.encode()
    assert quotas[0].startswith(f'"{office.mailbox}" (STORAGE 1 '.encode())  # the group's usage, not the user's
    assert member._imap.getquota(f'"{office.mailbox}"')[1][0] == quotas[0]
    own = member._imap.getquota('""')[1][0]
    assert own.startswith(b'"" (STORAGE 0 ')
    assert member._imap.getquota('"Shared/NoSuchGroup"')[0] == "NO"
