"""IMAP-only Store operations (kantoor.storage.imap_state), on SQLite and PostgreSQL:
bulk expunge, atomic COPY/MOVE with quota, RENAME (INBOX too) and CONDSTORE flag stores."""

from __future__ import annotations

import pytest

from kantoor.storage import AlreadyExists, QuotaExceeded

MESSAGE = b"From: a@example.org\r\nSubject: hello\r\n\r\nbody\r\n"


def _setup(core, login="ann@example.org", plan="standard"):  # type: ignore[no-untyped-def]
    account = core.store.create_account(login, "", plan)
    me = account.principal_id
    return account, me, core.store.mailbox(me, "INBOX", me), core.store.mailbox(me, "Archive", me)


def _uids(core, mailbox_id, me):  # type: ignore[no-untyped-def]
    return [m.uid for m in core.store.list_messages(mailbox_id, me)]


def test_expunge_removes_only_deleted_messages_in_one_go_rfc3501_6_4_3_and_rfc4315_uid_expunge(core) -> None:  # type: ignore[no-untyped-def]
    _, me, inbox, _ = _setup(core)
    for n in range(4):
        core.store.deliver_message(inbox.id, MESSAGE + b"x" * n, actor=me, flags=["\\Deleted"] if n != 1 else [])
    used = core.store.usage(me)["mail"]
    assert core.store.expunge_messages(inbox.id, [1, 2], actor=me) == [1]  # UID EXPUNGE: only listed UIDs
    assert core.store.expunge_messages(inbox.id, actor=me) == [3, 4]
    assert _uids(core, inbox.id, me) == [2]
    assert core.store.usage(me)["mail"] == used - 3 * len(MESSAGE) - 0 - 2 - 3
    kinds = [c.kind for c in core.store.changes_since(inbox.id, 0, me)]
    assert kinds.count("deleted") == 3


def test_copy_is_atomic_and_over_quota_stores_nothing_rfc9208(open_test_core) -> None:  # type: ignore[no-untyped-def]
    from kantoor.config import PlanSettings

    def tiny(settings):  # type: ignore[no-untyped-def]
        settings.plans["tiny"] = PlanSettings(title="tiny", imap=True, mail_bytes=3 * len(MESSAGE) + 10)

    core = open_test_core(tiny)
    _, me, inbox, archive = _setup(core, plan="tiny")
    core.store.deliver_message(inbox.id, MESSAGE, actor=me, flags=["\\Flagged"])
    core.store.deliver_message(inbox.id, MESSAGE, actor=me)
    with pytest.raises(QuotaExceeded):
        core.store.copy_messages(inbox.id, [1, 2], archive.id, actor=me)
    assert _uids(core, archive.id, me) == []
    assert core.store.usage(me)["mail"] == 2 * len(MESSAGE)
    assert core.store.copy_messages(inbox.id, [1], archive.id, actor=me) == [(1, 1)]
    copied = core.store.list_messages(archive.id, me)[0]
    assert copied.flags == "\\Flagged" and copied.subject == "hello" and copied.modseq > 0
    assert core.store.read_body(copied) == MESSAGE
    # A move inside one owner's mailboxes costs nothing, even at the limit.
    assert core.store.copy_messages(inbox.id, [2], archive.id, actor=me, move=True) == [(2, 2)]
    assert _uids(core, inbox.id, me) == [1] and _uids(core, archive.id, me) == [1, 2]
    assert core.store.usage(me)["mail"] == 3 * len(MESSAGE)


def test_move_gives_new_uids_and_logs_both_mailboxes_rfc6851(core) -> None:  # type: ignore[no-untyped-def]
    _, me, inbox, archive = _setup(core)
    big = MESSAGE + b"z" * 40_000  # a blob body: the move must not touch its reference count
    for _ in range(3):
        core.store.deliver_message(inbox.id, big, actor=me)
    core.store.deliver_message(archive.id, MESSAGE, actor=me)
    assert core.store.copy_messages(inbox.id, [1, 3], archive.id, actor=me, move=True) == [(1, 2), (3, 3)]
    assert _uids(core, inbox.id, me) == [2]
    assert _uids(core, archive.id, me) == [1, 2, 3]
    assert core.store.read_body(core.store.list_messages(archive.id, me)[1]) == big
    assert [c.kind for c in core.store.changes_since(inbox.id, 3, me)] == ["deleted", "deleted"]
    core.store.store_flags(archive.id, [2, 3], ["\\Deleted"], "add", me)
    core.store.expunge_messages(archive.id, actor=me)
    core.store.collect_garbage(grace_seconds=0)
    assert core.store.read_body(core.store.list_messages(inbox.id, me)[0]) == big


def test_copy_needs_rights_on_both_mailboxes(core) -> None:  # type: ignore[no-untyped-def]
    from kantoor.storage import PermissionDenied

    _, me, inbox, _ = _setup(core)
    _, other, other_inbox, _ = _setup(core, "bob@example.org")
    core.store.deliver_message(inbox.id, MESSAGE, actor=me)
    with pytest.raises(PermissionDenied):
        core.store.copy_messages(inbox.id, [1], other_inbox.id, actor=me)
    with pytest.raises(PermissionDenied):
        core.store.copy_messages(inbox.id, [1], other_inbox.id, actor=other, move=True)


def test_rename_moves_children_and_creates_parents_rfc3501_6_3_5(core) -> None:  # type: ignore[no-untyped-def]
    _, me, _, _ = _setup(core)
    projects = core.store.create_collection(me, "mailbox", "Projects", actor=me)
    core.store.create_collection(me, "mailbox", "Projects/2024", actor=me)
    core.store.deliver_message(projects.id, MESSAGE, actor=me)
    renamed = core.store.rename_mailbox(me, "Projects", "Old/Work", actor=me)
    assert renamed.id == projects.id and renamed.uidvalidity > projects.uidvalidity
    paths = {c.path for c in core.store.list_collections(me, "mailbox", me)}
    assert {"Old", "Old/Work", "Old/Work/2024"} <= paths and "Projects" not in paths
    assert _uids(core, renamed.id, me) == [1]
    with pytest.raises(AlreadyExists):
        core.store.rename_mailbox(me, "Archive", "Old/Work", actor=me)


def test_rename_inbox_moves_its_messages_and_keeps_inbox_rfc3501_6_3_5(core) -> None:  # type: ignore[no-untyped-def]
    _, me, inbox, _ = _setup(core)
    for _ in range(2):
        core.store.deliver_message(inbox.id, MESSAGE, actor=me)
    old = core.store.rename_mailbox(me, "INBOX", "Old mail", actor=me)
    assert _uids(core, old.id, me) == [1, 2]
    assert _uids(core, inbox.id, me) == []
    assert core.store.deliver_message(inbox.id, MESSAGE, actor=me).uid == 3  # no INBOX UID is reused


def test_store_flags_unchangedsince_rfc7162_3_1_3(core) -> None:  # type: ignore[no-untyped-def]
    _, me, inbox, _ = _setup(core)
    for _ in range(2):
        core.store.deliver_message(inbox.id, MESSAGE, actor=me)
    first, second = core.store.list_messages(inbox.id, me)
    core.store.store_flags(inbox.id, [2], ["\\Seen"], "add", me)
    result = core.store.store_flags(inbox.id, [1, 2], ["\\Flagged"], "add", me, unchanged_since=first.modseq)
    assert result.modified == [2]
    flags, modseq = result.updated[1]
    assert flags == ["\\Flagged"] and modseq == core.store.get_collection(inbox.id).modseq
    again = core.store.store_flags(inbox.id, [1], ["\\Flagged"], "add", me)
    assert again.updated == {} and again.unchanged[1] == (["\\Flagged"], modseq)


def test_one_store_command_gives_its_messages_one_new_modseq_and_logs_each_rfc7162_3_1(core) -> None:  # type: ignore[no-untyped-def]
    """RFC 7162 3.1: a STORE's changed messages all get a modseq above the mailbox's previous highest (one for
    the command); other sessions see each of them through the change log, the unchanged one is left alone."""
    _, me, inbox, _ = _setup(core)
    for n in range(4):
        core.store.deliver_message(inbox.id, MESSAGE, actor=me, flags=["\\Flagged"] if n == 2 else [])
    before = core.store.get_collection(inbox.id).modseq
    result = core.store.store_flags(inbox.id, [1, 2, 3, 4], ["\\Flagged", "$Work"], "add", me)
    assert sorted(result.updated) == [1, 2, 3, 4]
    assert {m for _, m in result.updated.values()} == {before + 1} == {core.store.get_collection(inbox.id).modseq}
    assert result.updated[3][0] == ["\\Flagged", "$Work"] and result.updated[1][0] == ["\\Flagged", "$Work"]
    logged = [(c.item_uid, c.modseq, c.kind) for c in core.store.changes_since(inbox.id, before, me)]
    assert sorted(logged) == [(uid, before + 1, "modified") for uid in (1, 2, 3, 4)]
    delta = core.store.mailbox_changes(inbox.id, before, 4, me)
    assert [(row.uid, row.modseq) for row in delta.changed] == [(uid, before + 1) for uid in (1, 2, 3, 4)]
    removed = core.store.store_flags(inbox.id, [1, 2, 3], ["$Work"], "remove", me)
    assert {m for _, m in removed.updated.values()} == {before + 2}
    # What every later reader sees (the flag rows of migration 0006, read back from the database).
    assert [r.flags for r in core.store.message_rows(inbox.id, [1, 2, 3, 4], me)] == (
        [["\\Flagged"]] * 3 + [["\\Flagged", "$Work"]])


@pytest.mark.parametrize("range_read_above", [500, 2])
def test_store_changes_exactly_the_named_messages_rfc3501_6_4_6(core, monkeypatch, range_read_above) -> None:  # type: ignore[no-untyped-def]
    """A STORE on some messages leaves the ones between them alone, whether the Store reads the named UIDs or
    their whole range (a large set: ``RANGE_READ_ABOVE`` patched low here), and a whole range changes as one."""
    from kantoor.storage import imap_state

    monkeypatch.setattr(imap_state, "RANGE_READ_ABOVE", range_read_above)
    _, me, inbox, _ = _setup(core)
    for n in range(7):
        core.store.deliver_message(inbox.id, MESSAGE, actor=me, flags=["\\Seen"] if n % 2 else [])

    def flags() -> list[list[str]]:
        return [r.flags for r in core.store.message_rows(inbox.id, list(range(1, 8)), me)]

    before = flags()
    result = core.store.store_flags(inbox.id, [2, 4, 5, 7], ["\\Deleted"], "add", me)
    assert sorted(result.updated) == [2, 4, 5, 7]
    after = flags()
    assert [after[i] for i in (0, 2, 5)] == [before[i] for i in (0, 2, 5)]  # UIDs 1, 3, 6 untouched
    assert all("\\Deleted" in after[uid - 1] for uid in (2, 4, 5, 7))
    assert core.store.expunge_messages(inbox.id, actor=me) == [2, 4, 5, 7]
    # The whole mailbox in one STORE: every message, whatever flags it had, gets the flag and one modseq.
    whole = core.store.store_flags(inbox.id, [1, 3, 6], ["\\Flagged"], "add", me)
    assert {uid: f for uid, (f, _) in whole.updated.items()} == {
        1: ["\\Flagged"], 3: ["\\Flagged"], 6: ["\\Seen", "\\Flagged"]}
    assert [r.flags for r in core.store.message_rows(inbox.id, [1, 3, 6], me)] == [
        ["\\Flagged"], ["\\Flagged"], ["\\Seen", "\\Flagged"]]
    assert len({m for _, m in whole.updated.values()}) == 1


def test_mailbox_rights_and_grants_follow_the_acl_engine_rfc4314(core) -> None:  # type: ignore[no-untyped-def]
    from kantoor.storage import PermissionDenied

    _, me, _, archive = _setup(core)
    friend, other, _, _ = _setup(core, "bob@example.org")
    assert core.store.rights_held(archive.id, actor=me) == {"freebusy", "read", "write", "bind", "admin"}
    assert core.store.rights_held(archive.id, actor=other) == frozenset()
    core.store.grant(archive.id, None, other, "read", actor=me)
    assert core.store.rights_held(archive.id, actor=other) == {"freebusy", "read"}
    assert core.store.mailbox_grants(archive.id, me) == [("ann@example.org", "admin"), ("bob@example.org", "read")]
    with pytest.raises(PermissionDenied):
        core.store.mailbox_grants(archive.id, other)


def test_a_recreated_mailbox_name_gets_a_higher_uidvalidity_rfc3501_2_3_1_1(core) -> None:  # type: ignore[no-untyped-def]
    _, me, _, _ = _setup(core)
    first = core.store.create_collection(me, "mailbox", "Again", actor=me)
    core.store.deliver_message(first.id, MESSAGE, actor=me)
    core.store.delete_mailbox(me, "Again", actor=me)
    second = core.store.create_collection(me, "mailbox", "Again", actor=me)
    assert second.uidvalidity > first.uidvalidity  # UID 1 of the new mailbox is not the old UID 1
    moved = core.store.create_collection(me, "mailbox", "Moved", actor=me)
    core.store.rename_mailbox(me, "Moved", "Elsewhere", actor=me)
    assert core.store.create_collection(me, "mailbox", "Moved", actor=me).uidvalidity > moved.uidvalidity


def test_vanished_since_lists_expunged_and_moved_uids_rfc7162_3_2_5(core) -> None:  # type: ignore[no-untyped-def]
    _, me, inbox, archive = _setup(core)
    for _ in range(4):
        core.store.deliver_message(inbox.id, MESSAGE, actor=me)
    mark = core.store.get_collection(inbox.id).modseq
    core.store.store_flags(inbox.id, [2], ["\\Deleted"], "add", me)
    core.store.expunge_messages(inbox.id, actor=me)
    core.store.copy_messages(inbox.id, [4], archive.id, actor=me, move=True)
    assert core.store.vanished_since(inbox.id, mark, me) == [2, 4]
    assert core.store.vanished_since(inbox.id, core.store.get_collection(inbox.id).modseq, me) == []
