"""Store.resolve_drive_path: what a drive URL names, in one statement, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from kantoor.storage import PermissionDenied


def _account(core, login: str):  # type: ignore[no-untyped-def]
    return core.store.create_account(login, "x", "standard")


def test_resolve_folder_file_missing_file_and_nothing(core):
    store = core.store
    owner = _account(core, "resolver@example.org").principal_id
    docs = store.create_collection(owner, "folder", "docs", actor=owner)
    sub = store.create_collection(owner, "folder", "docs/sub", actor=owner)
    store.put_item(docs.id, "a.txt", b"alpha", "text/plain", actor=owner)
    root = store.find_collection(owner, "folder", "", owner)

    place = store.resolve_drive_path(owner, "", owner)
    assert place.folder is not None and place.folder.id == root.id and place.item is None
    place = store.resolve_drive_path(owner, "docs/sub", owner)
    assert place.folder is not None and place.folder.id == sub.id and place.parent is None
    place = store.resolve_drive_path(owner, "docs/a.txt", owner)
    assert place.folder is None and place.parent.id == docs.id
    assert place.item is not None and place.item.name == "a.txt" and store.read_body(place.item) == b"alpha"
    place = store.resolve_drive_path(owner, "docs/new.txt", owner)  # a PUT's target: the folder, no item
    assert place.folder is None and place.parent.id == docs.id and place.item is None
    place = store.resolve_drive_path(owner, "sub/a.txt", owner)  # an item of another folder is not found
    assert place.folder is None and place.parent is None and place.item is None
    place = store.resolve_drive_path(owner, "a.txt", owner)
    assert place.parent is not None and place.parent.id == root.id and place.item is None
    assert store.resolve_drive_path(owner, "nowhere/x", owner) == type(place)()


def test_resolve_needs_read_and_tells_whether_any_lock_exists(core):
    store = core.store
    owner = _account(core, "locked@example.org").principal_id
    stranger = _account(core, "stranger@example.org").principal_id
    docs = store.create_collection(owner, "folder", "docs", actor=owner)
    store.put_item(docs.id, "a.txt", b"alpha", "text/plain", actor=owner)
    with pytest.raises(PermissionDenied):
        store.resolve_drive_path(owner, "docs/a.txt", stranger)
    with pytest.raises(PermissionDenied):
        store.resolve_drive_path(owner, "docs", stranger)

    assert store.resolve_drive_path(owner, "docs/a.txt", owner).locks_exist is None  # not asked
    assert store.resolve_drive_path(owner, "docs/a.txt", owner, with_locks=True).locks_exist is False
    # Any live lock anywhere in the database (another drive, another process) turns the checks back on.
    lock = store.acquire_lock("/~999/elsewhere", scope="exclusive", depth="0", principal="x@example.org")
    assert store.resolve_drive_path(owner, "docs/a.txt", owner, with_locks=True).locks_exist is True
    assert store.resolve_drive_path(owner, "docs/new.txt", owner, with_locks=True).locks_exist is True
    store.release_lock(lock.token)
    assert store.resolve_drive_path(owner, "docs", owner, with_locks=True).locks_exist is False
    # An expired lock does not count.
    expired = store.acquire_lock("/~999/old", scope="exclusive", depth="0", principal="x@example.org", timeout=1)
    with store.write() as s:
        from sqlalchemy import update

        from kantoor.storage.models import Lock, utcnow
        s.execute(update(Lock).where(Lock.token == expired.token).values(expires_at=utcnow()))
    assert store.resolve_drive_path(owner, "docs", owner, with_locks=True).locks_exist is False


def test_owner_read_outside_a_request_scope_matches_the_shared_session_read(core):
    """The owner's single-statement read (SQLite: no transaction around it) returns the same
    folder, parent and item, every loaded column alike (timestamps aware UTC), as the read in
    a request's shared session."""
    store = core.store
    owner = _account(core, "autocommit@example.org").principal_id
    docs = store.create_collection(owner, "folder", "docs", actor=owner)
    store.put_item(docs.id, "a.txt", b"alpha", "text/plain", actor=owner)
    store.put_item(docs.id, "big.bin", b"x" * (store.inline_limit + 1), "application/x-big", actor=owner)

    def columns(obj):  # type: ignore[no-untyped-def]
        return None if obj is None else {k: v for k, v in vars(obj).items() if not k.startswith("_")}

    for path in ("", "docs", "docs/a.txt", "docs/big.bin", "docs/new.txt", "nowhere/x"):
        for with_locks in (False, True):
            direct = store.resolve_drive_path(owner, path, owner, with_locks=with_locks)
            with store.request_scope():
                standalone = store.resolve_drive_path(owner, path, owner, with_locks=with_locks, standalone=True)
                shared = store.resolve_drive_path(owner, path, owner, with_locks=with_locks)
            for part in ("folder", "parent", "item", "locks_exist"):
                expected = columns(getattr(shared, part)) if part != "locks_exist" else shared.locks_exist
                for got in (direct, standalone):
                    value = columns(getattr(got, part)) if part != "locks_exist" else got.locks_exist
                    assert value == expected, (path, part, with_locks)
            if direct.item is not None:
                assert direct.item.updated_at.tzinfo is not None
    store.acquire_lock(f"/~{owner}/docs/a.txt", scope="exclusive", depth="0", principal="autocommit@example.org")
    assert store.resolve_drive_path(owner, "docs/a.txt", owner, with_locks=True).locks_exist is True
    assert store.read_body(store.resolve_drive_path(owner, "docs/a.txt", owner).item) == b"alpha"
