"""WebDAV locks in the database (RFC 4918 §6, §7): conflicts, depth, expiry, refresh, release."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

from kantoor.storage.locks import MAX_LOCK_SECONDS, LockConflict, lock_ancestors
from kantoor.storage.models import Lock


def test_lock_ancestors_walk_up_to_the_root() -> None:
    assert lock_ancestors("/a/b") == ["/a/b", "/a", "/"]
    assert lock_ancestors("/") == ["/"]


def test_rfc4918_6_1_exclusive_lock_conflicts_shared_locks_coexist(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    lock = store.acquire_lock("/ann/a.txt", scope="exclusive", depth="0", principal="ann", owner="<o/>",
                              timeout=60)
    assert lock.token.startswith("opaquelocktoken:") and lock.timeout_seconds == 60
    with pytest.raises(LockConflict) as raised:
        store.acquire_lock("/ann/a.txt", scope="shared", depth="0", principal="bob")
    assert raised.value.roots == ["/ann/a.txt"]
    first = store.acquire_lock("/ann/b.txt", scope="shared", depth="0", principal="ann")
    second = store.acquire_lock("/ann/b.txt", scope="shared", depth="0", principal="bob")
    assert {x.token for x in store.locks_on(["/ann/b.txt"])} == {first.token, second.token}
    with pytest.raises(LockConflict):
        store.acquire_lock("/ann/b.txt", scope="exclusive", depth="0", principal="ann")


def test_rfc4918_7_depth_infinity_covers_members_and_sees_locked_members(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    store.acquire_lock("/ann/dir", scope="exclusive", depth="infinity", principal="ann")
    with pytest.raises(LockConflict):
        store.acquire_lock("/ann/dir/sub/f", scope="exclusive", depth="0", principal="bob")
    # A depth-0 lock on a folder does not cover its members.
    store.acquire_lock("/ann/flat", scope="exclusive", depth="0", principal="ann")
    store.acquire_lock("/ann/flat/f", scope="exclusive", depth="0", principal="ann")
    # …but a depth-infinity request meets the locks below it.
    with pytest.raises(LockConflict) as raised:
        store.acquire_lock("/ann", scope="exclusive", depth="infinity", principal="ann")
    assert "/ann/flat/f" in raised.value.roots
    assert {x.root for x in store.locks_below("/ann")} == {"/ann/dir", "/ann/flat", "/ann/flat/f"}
    assert store.release_locks_at("/ann/flat", recursive=True) == 2
    assert [x.root for x in store.locks_below("/ann")] == ["/ann/dir"]


def test_rfc4918_6_6_expired_locks_vanish_and_refresh_restarts_the_timeout(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    lock = store.acquire_lock("/ann/x", scope="exclusive", depth="0", principal="ann", timeout=0)
    assert lock.timeout_seconds == MAX_LOCK_SECONDS  # "Infinite" is capped
    refreshed = store.refresh_lock(lock.token, 120)
    assert refreshed is not None and refreshed.timeout_seconds == 120
    with core.store.write() as s:
        s.execute(update(Lock).where(Lock.token == lock.token)
                  .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert store.get_lock(lock.token) is None
    assert store.locks_on(["/ann/x"]) == []
    assert store.refresh_lock(lock.token, 60) is None
    # The expired lock no longer conflicts and is purged by the next grant.
    again = store.acquire_lock("/ann/x", scope="exclusive", depth="0", principal="bob")
    assert store.get_lock(again.token) is not None
    assert store.release_lock(again.token) is True
    assert store.release_lock(again.token) is False
    assert store.purge_expired_locks() == 0


def test_lock_arguments_are_validated(core) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        core.store.acquire_lock("/a", scope="both", depth="0", principal="ann")
    with pytest.raises(ValueError):
        core.store.acquire_lock("/a", scope="shared", depth="1", principal="ann")


def test_drive_rights_name_every_right_held(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    ann = store.create_account("ann@example.org", "", "standard")
    bob = store.create_account("bob@example.org", "", "standard")
    root = store.find_collection(ann.principal_id, "folder", "", ann.principal_id)
    store.put_item(root.id, "a.txt", b"a", "text/plain", actor=ann.principal_id)
    assert {"read", "write", "admin"} <= store.rights_held(root.id, "a.txt", actor=ann.principal_id)
    assert store.rights_held(root.id, "a.txt", actor=bob.principal_id) == frozenset()
    item = store.get_item(root.id, "a.txt", ann.principal_id)
    store.grant(None, item.id, bob.principal_id, "read", actor=ann.principal_id)
    assert store.rights_held(root.id, "a.txt", actor=bob.principal_id) == {"freebusy", "read"}
    assert store.rights_held(root.id, actor=bob.principal_id) == frozenset()


def test_rfc4918_7_a_claimed_put_is_checked_against_the_locks_in_its_own_transaction(core) -> None:  # type: ignore[no-untyped-def]
    """put_item(claim=…): the locks on the path are read again inside the write (storage.locks.WriteClaim)."""
    from kantoor.storage.locks import WriteClaim

    store = core.store
    account = store.create_account("claim@example.org", "", "standard")
    root = store.find_collection(account.principal_id, "folder", "", account.principal_id)
    owner = account.principal_id
    store.put_item(root.id, "f.txt", b"v1", "text/plain", actor=owner)
    held = store.acquire_lock("/files/claim/f.txt", scope="exclusive", depth="0", principal="ann")

    def put(claim: WriteClaim, name: str = "f.txt", body: bytes = b"v2") -> None:
        store.put_item(root.id, name, body, "text/plain", actor=owner, claim=claim)

    with pytest.raises(LockConflict) as raised:
        put(WriteClaim("/files/claim/f.txt", "bob", frozenset({held.token})))  # another's token is not his
    assert raised.value.roots == ["/files/claim/f.txt"]
    assert store.get_item(root.id, "f.txt", actor=owner).size == 2  # nothing written, usage unchanged
    put(WriteClaim("/files/claim/f.txt", "ann", frozenset({held.token})))  # the holder writes
    # A depth-0 lock on the folder: its members may change, but no member may be added (§7.4)...
    store.acquire_lock("/files/claim", scope="exclusive", depth="0", principal="ann")
    put(WriteClaim("/files/claim/f.txt", "ann", frozenset({held.token})))
    with pytest.raises(LockConflict):
        put(WriteClaim("/files/claim/new.txt", "ann"), name="new.txt")
    # ... and a depth-infinity lock above covers everything below it.
    store.release_locks_at("/files/claim", recursive=True)
    store.acquire_lock("/files", scope="exclusive", depth="infinity", principal="carol")
    with pytest.raises(LockConflict) as raised:
        put(WriteClaim("/files/claim/f.txt", "ann", frozenset({held.token})))
    assert raised.value.roots == ["/files"]
