"""The drive's mount-point queries (groups, shared with me) and the Drop folder's put-without-overwrite."""

from __future__ import annotations

import pytest

from kantoor.storage import DROP_FOLDER, NotFound, PermissionDenied


def _accounts(store, *logins):  # type: ignore[no-untyped-def]
    return [store.create_account(login, "", "standard") for login in logins]


def test_drive_groups_and_drive_plan(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    ann, bob = _accounts(store, "ann@example.org", "bob@example.org")
    group = store.create_group("Team", "ann@example.org")
    store.add_member("Team", "bob@example.org")
    assert store.drive_groups(bob.principal_id) == [("Team", group.principal_id)]
    assert store.drive_groups(ann.principal_id) == [("Team", group.principal_id)]
    assert store.drive_plan(group.principal_id) == ann.plan
    assert store.drive_plan(bob.principal_id) == bob.plan
    with pytest.raises(NotFound):
        store.drive_plan(10**9)


def test_find_folder_hides_folders_without_the_right(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    ann, bob, eve = _accounts(store, "ann@example.org", "bob@example.org", "eve@example.org")
    store.create_group("Team", "ann@example.org")
    store.add_member("Team", "bob@example.org")
    drop = store.find_folder(ann.principal_id, DROP_FOLDER, bob.principal_id, right="bind")
    assert drop.special_use == "drop"
    with pytest.raises(NotFound):
        store.find_folder(ann.principal_id, DROP_FOLDER, bob.principal_id, right="read")
    with pytest.raises(NotFound):
        store.find_folder(ann.principal_id, DROP_FOLDER, eve.principal_id, right="bind")


def test_drop_item_never_replaces_and_needs_bind(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    ann, bob, eve = _accounts(store, "ann@example.org", "bob@example.org", "eve@example.org")
    store.create_group("Team", "ann@example.org")
    store.add_member("Team", "bob@example.org")
    drop = store.find_folder(ann.principal_id, DROP_FOLDER, ann.principal_id)
    names = [store.drop_item(drop.id, "report.pdf", body, "application/pdf", actor=bob.principal_id).name
             for body in (b"1", b"2", b"3")]
    assert names == ["report.pdf", "report (2).pdf", "report (3).pdf"]
    assert store.drop_item(drop.id, ".hidden", b"h", "text/plain", actor=bob.principal_id).name == ".hidden"
    assert store.drop_item(drop.id, ".hidden", b"h", "text/plain", actor=bob.principal_id).name == ".hidden (2)"
    bodies = {i.name: store.read_body(i) for i in store.list_items(drop.id, ann.principal_id)}
    assert bodies["report.pdf"] == b"1" and bodies["report (3).pdf"] == b"3"
    assert store.usage(ann.principal_id)["documents"] == 5
    with pytest.raises(PermissionDenied):
        store.drop_item(drop.id, "spam.txt", b"spam", "text/plain", actor=eve.principal_id)
    with pytest.raises(PermissionDenied):
        store.list_items(drop.id, bob.principal_id)


def test_shared_with_me_follows_grants_and_revocation(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    ann, bob, eve = _accounts(store, "ann@example.org", "bob@example.org", "eve@example.org")
    group = store.create_group("Team", "ann@example.org")
    store.add_member("Team", "bob@example.org")
    folder = store.create_collection(ann.principal_id, "folder", "project", actor=ann.principal_id)
    root = store.find_collection(ann.principal_id, "folder", "", ann.principal_id)
    item, _ = store.put_item(root.id, "single.txt", b"s", "text/plain", actor=ann.principal_id)
    store.grant(folder.id, None, group.principal_id, "read", actor=ann.principal_id)
    store.grant(None, item.id, bob.principal_id, "read", actor=ann.principal_id)
    store.grant(folder.id, None, bob.principal_id, "write", actor=ann.principal_id)
    entries = store.shared_with_me(bob.principal_id)
    assert [(e.name, e.owner_name, e.right) for e in entries] == [
        ("project", "ann@example.org", "write"), ("single.txt", "ann@example.org", "read")]
    assert store.shared_with_me(eve.principal_id) == []
    assert store.shared_with_me(ann.principal_id) == []  # one's own shares are not "shared with me"
    store.revoke(folder.id, None, bob.principal_id, actor=ann.principal_id)
    assert [(e.name, e.right) for e in store.shared_with_me(bob.principal_id)] == [
        ("project", "read"), ("single.txt", "read")]
    store.revoke(folder.id, None, group.principal_id, actor=ann.principal_id)
    assert [e.name for e in store.shared_with_me(bob.principal_id)] == ["single.txt"]
