"""ACL engine: private by default (invariant 5), grants, groups, drop folders, free/busy."""

from __future__ import annotations

import pytest

from kantoor.storage import PermissionDenied


@pytest.fixture
def people(core):  # type: ignore[no-untyped-def]
    store = core.store
    ann = store.create_account("ann@example.org", "", "standard")
    bob = store.create_account("bob@example.org", "", "standard")
    eve = store.create_account("eve@example.org", "", "standard")
    return core, ann, bob, eve


def _coll(core, owner, kind, path):  # type: ignore[no-untyped-def]
    return core.store.find_collection(owner.principal_id, kind, path)


def test_resources_are_private_until_granted(people) -> None:  # type: ignore[no-untyped-def]
    core, ann, bob, _eve = people
    cal = _coll(core, ann, "calendar", "calendar")
    core.store.put_item(cal.id, "e.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar",
                        actor=ann.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.get_item(cal.id, "e.ics", actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.list_items(cal.id, actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.mailbox(ann.principal_id, "INBOX", actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.grant(cal.id, None, bob.principal_id, "read", actor=bob.principal_id)  # no self-service

    core.store.grant(cal.id, None, bob.principal_id, "read", actor=ann.principal_id)
    assert core.store.get_item(cal.id, "e.ics", actor=bob.principal_id).name == "e.ics"
    with pytest.raises(PermissionDenied):
        core.store.delete_item(cal.id, "e.ics", actor=bob.principal_id)  # read is not write

    core.store.revoke(cal.id, None, bob.principal_id, actor=ann.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.get_item(cal.id, "e.ics", actor=bob.principal_id)


def test_grant_to_a_group_reaches_its_members_and_ends_with_membership(people) -> None:  # type: ignore[no-untyped-def]
    core, ann, bob, eve = people
    group = core.store.create_group("Team", ann.login)
    core.store.add_member("Team", bob.login)
    root = _coll(core, ann, "folder", "")
    shared = core.store.create_collection(ann.principal_id, "folder", "Reports", actor=ann.principal_id)
    sub = core.store.create_collection(ann.principal_id, "folder", "Reports/2026", actor=ann.principal_id)
    core.store.put_item(sub.id, "q1.txt", b"numbers", "text/plain", actor=ann.principal_id)
    core.store.put_item(root.id, "private.txt", b"mine", "text/plain", actor=ann.principal_id)

    core.store.grant(shared.id, None, group.principal_id, "write", actor=ann.principal_id)
    # A folder share covers the folders below it; nothing else of Ann's.
    assert core.store.get_item(sub.id, "q1.txt", actor=bob.principal_id).size == 7
    core.store.put_item(sub.id, "q2.txt", b"more", "text/plain", actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.get_item(root.id, "private.txt", actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.get_item(sub.id, "q1.txt", actor=eve.principal_id)  # not a member

    core.store.remove_member("Team", bob.login)
    with pytest.raises(PermissionDenied):
        core.store.get_item(sub.id, "q1.txt", actor=bob.principal_id)


def test_single_item_grant(people) -> None:  # type: ignore[no-untyped-def]
    core, ann, bob, _ = people
    root = _coll(core, ann, "folder", "")
    one, _ = core.store.put_item(root.id, "one.txt", b"1", "text/plain", actor=ann.principal_id)
    core.store.put_item(root.id, "two.txt", b"2", "text/plain", actor=ann.principal_id)
    core.store.grant(None, one.id, bob.principal_id, "read", actor=ann.principal_id)
    assert core.store.get_item(root.id, "one.txt", actor=bob.principal_id).name == "one.txt"
    with pytest.raises(PermissionDenied):
        core.store.get_item(root.id, "two.txt", actor=bob.principal_id)


def test_group_space_admin_writes_members_read_until_allowed(people) -> None:  # type: ignore[no-untyped-def]
    core, ann, bob, eve = people
    group = core.store.create_group("Club", ann.login)
    core.store.add_member("Club", bob.login)
    cal = _coll(core, group, "calendar", "calendar")
    core.store.put_item(cal.id, "meet.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar",
                        actor=ann.principal_id)
    assert core.store.get_item(cal.id, "meet.ics", actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.put_item(cal.id, "bob.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar",
                            actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.list_items(cal.id, actor=eve.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.remove_member("Club", ann.login)  # the administrator cannot leave

    core.store.remove_member("Club", bob.login)
    core.store.add_member("Club", bob.login, can_write=True)
    core.store.put_item(cal.id, "bob.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar",
                        actor=bob.principal_id)


def test_drop_folder_is_write_only_for_fellow_members(people) -> None:  # type: ignore[no-untyped-def]
    core, ann, bob, eve = people
    core.store.create_group("Office", ann.login)
    core.store.add_member("Office", bob.login)
    drop = _coll(core, ann, "folder", "Drop folder")
    core.store.put_item(drop.id, "for-ann.pdf", b"%PDF", "application/pdf", actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.list_items(drop.id, actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.get_item(drop.id, "for-ann.pdf", actor=bob.principal_id)
    with pytest.raises(PermissionDenied):  # overwriting needs write, not bind
        core.store.put_item(drop.id, "for-ann.pdf", b"evil", "application/pdf", actor=bob.principal_id)
    with pytest.raises(PermissionDenied):
        core.store.delete_item(drop.id, "for-ann.pdf", actor=bob.principal_id)
    with pytest.raises(PermissionDenied):  # not in a common group
        core.store.put_item(drop.id, "spam.pdf", b"%PDF", "application/pdf", actor=eve.principal_id)
    assert [i.name for i in core.store.list_items(drop.id, actor=ann.principal_id)] == ["for-ann.pdf"]


def test_members_get_free_busy_but_not_details(people) -> None:  # type: ignore[no-untyped-def]
    core, ann, bob, eve = people
    core.store.create_group("Plan", ann.login)
    core.store.add_member("Plan", bob.login)
    cal = _coll(core, ann, "calendar", "calendar")
    with core.store.read() as s:
        assert core.acl.effective_rights(s, bob.principal_id, cal) == frozenset({"freebusy"})
        assert core.acl.effective_rights(s, eve.principal_id, cal) == frozenset()
    with pytest.raises(PermissionDenied):
        core.store.list_items(cal.id, actor=bob.principal_id)
