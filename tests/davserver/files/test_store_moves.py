"""The Store operations behind a native WebDAV MOVE (added for the drive), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from kantoor.storage import AlreadyExists, PermissionDenied


def _account(core, login: str):  # type: ignore[no-untyped-def]
    return core.store.create_account(login, "x", "standard")


def test_move_collection_rewrites_the_subtree_and_keeps_ids(core):
    store = core.store
    owner = _account(core, "mover@example.org").principal_id
    a = store.create_collection(owner, "folder", "a", actor=owner)
    ab = store.create_collection(owner, "folder", "a/b", actor=owner)
    store.create_collection(owner, "folder", "a/b/c", actor=owner)
    store.put_item(ab.id, "f.txt", b"file", "text/plain", actor=owner)
    target = store.create_collection(owner, "folder", "t", actor=owner)
    used = store.usage(owner)["documents"]

    moved = store.move_collection(a.id, target.id, "renamed", actor=owner)

    assert moved.id == a.id and moved.path == "t/renamed"
    assert store.find_collection(owner, "folder", "t/renamed/b", owner).id == ab.id
    assert store.find_collection(owner, "folder", "t/renamed/b/c", owner)
    assert store.get_item(ab.id, "f.txt", owner).size == 4
    assert store.usage(owner)["documents"] == used
    with pytest.raises(ValueError):
        store.move_collection(target.id, ab.id, "loop", actor=owner)  # into its own subtree
    store.create_collection(owner, "folder", "taken", actor=owner)
    with pytest.raises(AlreadyExists):
        store.move_collection(moved.id, store.find_collection(owner, "folder", "", owner).id, "taken", actor=owner)


def test_move_item_renames_across_folders_and_checks_rights(core):
    store = core.store
    owner = _account(core, "owner@example.org").principal_id
    stranger = _account(core, "stranger@example.org").principal_id
    src = store.create_collection(owner, "folder", "src", actor=owner)
    dest = store.create_collection(owner, "folder", "dest", actor=owner)
    item, _ = store.put_item(src.id, "doc.txt", b"hello", "text/plain", actor=owner)
    old, _ = store.put_item(dest.id, "doc2.txt", b"older content", "text/plain", actor=owner)
    used = store.usage(owner)["documents"]

    with pytest.raises(PermissionDenied):
        store.move_item(src.id, "doc.txt", dest.id, "x.txt", actor=stranger)
    moved = store.move_item(src.id, "doc.txt", dest.id, "doc2.txt", actor=owner)  # replaces doc2.txt

    assert moved.id == item.id and moved.etag == item.etag
    assert store.read_body(store.get_item(dest.id, "doc2.txt", owner)) == b"hello"
    assert [i.name for i in store.list_items(src.id, owner)] == []
    assert store.usage(owner)["documents"] == used - old.size
    kinds = [(c.item_name, c.kind) for c in store.changes_since(dest.id, 0, owner)]
    assert ("doc2.txt", "deleted") in kinds and kinds[-1] == ("doc2.txt", "created")
