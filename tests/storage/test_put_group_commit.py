"""Group commit of PUTs (storage/items.py), on SQLite and PostgreSQL.

Concurrent PUTs written in one transaction must leave exactly the rows PUTs written one by one
would: each its own change-log row and mod-sequence (RFC 6578 §3.2: a sync report lists every
change), the new ETag of each resource (RFC 9110 §8.8.3), the lock checks of every path
(RFC 4918 §7), the quota (RFC 4331) — and a PUT that must be refused is refused alone.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from kantoor.storage import PreconditionFailed
from kantoor.storage.items import ITEM_COLUMNS
from kantoor.storage.locks import LockConflict, WriteClaim
from kantoor.storage.models import Change, Collection, Item


def _rows(core, query):  # type: ignore[no-untyped-def]
    with core.store.read() as s:
        return s.execute(query).all()


def _drive(core, login: str = "ann@example.org"):  # type: ignore[no-untyped-def]
    store = core.store
    account = store.create_account(login, "", "standard")
    root = store.find_collection(account.principal_id, "folder", "", account.principal_id)
    sub = store.create_collection(account.principal_id, "folder", "sub", actor=account.principal_id)
    return account.principal_id, root, sub


def _commit(store, jobs):  # type: ignore[no-untyped-def]
    with store._writer_turn():
        store._put_group().commit(jobs)
    return jobs


def test_puts_written_together_leave_the_rows_of_puts_written_alone_rfc6578_rfc9110(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner, root, sub = _drive(core)
    old, _ = store.put_item(root.id, "old.txt", b"version one", "text/plain", actor=owner)
    events = []
    store.notifier.subscribe(events.append)
    big = b"z" * (store.inline_limit + 1)  # a blob file
    jobs = _commit(store, [
        store._prepare_put(root.id, "a.bin", b"alpha", "application/octet-stream", actor=owner),
        store._prepare_put(sub.id, "b.bin", big, "application/octet-stream", actor=owner),
        store._prepare_put(root.id, "old.txt", b"version two!", "text/plain", actor=owner, if_match=old.etag),
        store._prepare_put(root.id, "c.bin", b"gamma", "application/octet-stream", actor=owner)])
    assert [job.error for job in jobs] == [None] * 4
    results = [job.result for job in jobs]
    assert [created for _item, created in results] == [True, True, False, True]
    replaced = results[2][0]
    assert replaced.id == old.id and replaced.etag != old.etag and replaced.size == len(b"version two!")

    # What each caller got back is what was stored, and a fresh read returns it.
    for item, _created in results:
        fresh = store.get_item(item.collection_id, item.name, actor=owner)
        assert (fresh.id, fresh.etag, fresh.size, fresh.modseq, fresh.content_type) == (
            item.id, item.etag, item.size, item.modseq, item.content_type)
        assert store.read_body(fresh) == (big if item.name == "b.bin" else
                                          {"a.bin": b"alpha", "old.txt": b"version two!", "c.bin": b"gamma"}[
                                              item.name])

    # One change each, with its own mod-sequence, ascending in each collection; the collections' counters.
    changes = _rows(core, select(Change.collection_id, Change.modseq, Change.item_name, Change.kind)
                    .where(Change.collection_id.in_([root.id, sub.id]), Change.item_name != "sub/")
                    .order_by(Change.collection_id, Change.modseq))
    root_changes = [(c.item_name, c.kind) for c in changes if c.collection_id == root.id]
    assert root_changes == [("old.txt", "created"), ("a.bin", "created"), ("old.txt", "modified"),
                            ("c.bin", "created")]
    assert [(c.item_name, c.kind) for c in changes if c.collection_id == sub.id] == [("b.bin", "created")]
    for item, _created in results:
        assert (item.collection_id, item.modseq, item.name) in {(c.collection_id, c.modseq, c.item_name)
                                                                for c in changes}
    counters = dict(_rows(core, select(Collection.id, Collection.modseq).where(Collection.id.in_([root.id, sub.id]))))
    assert counters[root.id] == max(c.modseq for c in changes if c.collection_id == root.id)
    assert counters[sub.id] == max(c.modseq for c in changes if c.collection_id == sub.id)
    assert store.usage(owner)["documents"] == len(b"alpha") + len(big) + len(b"version two!") + len(b"gamma")
    # Published after the commit, one per change.
    assert sorted((e.collection_id, e.item_name, e.kind, e.modseq) for e in events) == sorted(
        (c.collection_id, c.item_name, c.kind, c.modseq) for c in changes if (c.item_name, c.kind) != (
            "old.txt", "created"))


def test_a_put_refused_in_a_group_is_refused_alone_and_the_others_are_stored_rfc9110_13_1_1(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner, root, _sub = _drive(core)
    store.put_item(root.id, "kept.txt", b"v1", "text/plain", actor=owner)
    jobs = _commit(store, [
        store._prepare_put(root.id, "one.bin", b"1", "application/octet-stream", actor=owner),
        store._prepare_put(root.id, "kept.txt", b"v2", "text/plain", actor=owner, if_match='"not-its-etag"'),
        store._prepare_put(root.id, "two.bin", b"22", "application/octet-stream", actor=owner)])
    assert isinstance(jobs[1].error, PreconditionFailed)
    assert jobs[0].error is None and jobs[2].error is None
    assert store.read_body(store.get_item(root.id, "kept.txt", actor=owner)) == b"v1"
    assert store.read_body(store.get_item(root.id, "two.bin", actor=owner)) == b"22"
    assert store.usage(owner)["documents"] == 2 + 1 + 2


def test_rfc4918_7_every_path_of_a_group_is_checked_against_the_locks(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner, root, sub = _drive(core)
    store.put_item(sub.id, "locked.txt", b"v1", "text/plain", actor=owner)
    held = store.acquire_lock("/files/ann/sub/locked.txt", scope="exclusive", depth="0", principal="carol")
    store.acquire_lock("/files/ann/closed", scope="exclusive", depth="0", principal="carol")  # no new members

    def claimed(coll, name: str, body: bytes, tokens=frozenset()):  # type: ignore[no-untyped-def]
        root_path = "/files/ann/" + (coll.path + "/" if coll.path else "") + name
        return store._prepare_put(coll.id, name, body, "text/plain", actor=owner,
                                  claim=WriteClaim(root_path, "ann", frozenset(tokens)))

    closed = store.create_collection(owner, "folder", "closed", actor=owner)
    jobs = _commit(store, [claimed(sub, "locked.txt", b"v2"), claimed(sub, "free.txt", b"free"),
                           claimed(closed, "new.txt", b"new"), claimed(root, "top.txt", b"top")])
    assert isinstance(jobs[0].error, LockConflict) and jobs[0].error.roots == ["/files/ann/sub/locked.txt"]
    assert isinstance(jobs[2].error, LockConflict) and jobs[2].error.roots == ["/files/ann/closed"]
    assert jobs[1].error is None and jobs[3].error is None
    assert store.read_body(store.get_item(sub.id, "locked.txt", actor=owner)) == b"v1"
    # The holder of the lock writes, in a group with another PUT.
    held_by_carol = store._prepare_put(sub.id, "locked.txt", b"v3", "text/plain", actor=owner,
                                       claim=WriteClaim("/files/ann/sub/locked.txt", "carol", frozenset({held.token})))
    jobs = _commit(store, [held_by_carol, claimed(sub, "free.txt", b"free again")])
    assert [job.error for job in jobs] == [None, None]
    assert store.read_body(store.get_item(sub.id, "locked.txt", actor=owner)) == b"v3"


def test_concurrent_puts_each_answer_after_their_own_commit_and_one_name_is_written_in_turn(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner, root, _sub = _drive(core)
    names = [f"f{n % 6}.bin" for n in range(24)]  # each name PUT four times
    errors: list[BaseException] = []
    returned: dict[int, tuple[Item, bool]] = {}
    start = threading.Barrier(8)

    def put(worker: int) -> None:
        start.wait()
        for n in range(worker, len(names), 8):
            try:
                returned[n] = store.put_item(root.id, names[n], b"body %d" % n, "application/octet-stream",
                                             actor=owner)
                # What the caller reads after its PUT returned sees it (or a later PUT of the name).
                assert store.get_item(root.id, names[n], actor=owner).modseq >= returned[n][0].modseq
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=put, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(created for _item, created in returned.values()) == 6  # each name created once, then replaced
    modseqs = [item.modseq for item, _created in returned.values()]
    assert len(set(modseqs)) == len(names)
    changes = _rows(core, select(Change.modseq, Change.item_name).where(Change.collection_id == root.id,
                                                                        Change.item_name != "sub/"))
    assert len(changes) == len(names) and {m for m, _ in changes} == set(modseqs)
    stored = {item.name: item for item in store.list_items(root.id, actor=owner)}
    for name in set(names):
        last = max((item for item, _c in returned.values() if item.name == name), key=lambda item: item.modseq)
        assert stored[name].etag == last.etag
    assert store.usage(owner)["documents"] == sum(stored_item.size for stored_item in stored.values())


@pytest.mark.parametrize("tokens", [False, True])
def test_rfc4918_7_a_lock_above_refuses_the_write_of_its_grouped_members(core, tokens: bool) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner, _root, sub = _drive(core)
    lock = store.acquire_lock("/files/ann", scope="exclusive", depth="infinity", principal="ann")
    held = frozenset({lock.token}) if tokens else frozenset()
    jobs = _commit(store, [
        store._prepare_put(sub.id, name, b"x", "text/plain", actor=owner,
                           claim=WriteClaim(f"/files/ann/sub/{name}", "ann", held)) for name in ("a", "b")])
    if tokens:
        assert [job.error for job in jobs] == [None, None]
    else:
        assert all(isinstance(job.error, LockConflict) and job.error.roots == ["/files/ann"] for job in jobs)


def test_puts_waiting_at_once_share_one_transaction_and_each_returns_its_own_item(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner, root, _sub = _drive(core)
    groups: list[int] = []
    together = store._put_together

    def counted(s, jobs):  # type: ignore[no-untyped-def]
        groups.append(len(jobs))
        return together(s, jobs)

    store._put_together = counted
    returned: dict[str, Item] = {}
    group = store._put_group()
    with group.leader:  # a write in progress: the PUTs arriving meanwhile wait for it together
        threads = [threading.Thread(target=lambda n=n: returned.__setitem__(
            f"{n}.bin", store.put_item(root.id, f"{n}.bin", b"%d" % n, "application/octet-stream", actor=owner)[0]))
            for n in range(6)]
        for thread in threads:
            thread.start()
        while group.waiting < 6:
            threading.Event().wait(0.01)
    for thread in threads:
        thread.join()
    assert groups == [6]
    assert sorted(returned) == [f"{n}.bin" for n in range(6)]
    for name, item in returned.items():
        assert item.name == name and store.read_body(store.get_item(root.id, name, actor=owner)) == name[:-4].encode()


def test_a_file_written_in_a_group_is_stored_column_for_column_as_one_written_alone_rfc4918_9_7(core) -> None:  # type: ignore[no-untyped-def]
    store = core.store
    owner, root, _sub = _drive(core)
    bodies = {"text.txt": (b"plain words", "text/plain; charset=utf-8"),
              "big.bin": (b"b" * (store.inline_limit + 3), "application/octet-stream"),
              "empty.bin": (b"", "application/octet-stream")}
    for name, (body, content_type) in bodies.items():
        store.put_item(root.id, "alone-" + name, body, content_type, actor=owner)
    jobs = _commit(store, [store._prepare_put(root.id, "group-" + name, body, content_type, actor=owner)
                           for name, (body, content_type) in bodies.items()])
    assert [job.error for job in jobs] == [None] * 3
    varying = {"id", "name", "created_at", "updated_at", "modseq"}
    columns = [column for column in Item.__table__.columns if column.key not in varying]
    rows = {row[0]: row[1:] for row in _rows(core, select(Item.name, *columns).where(Item.collection_id == root.id))}
    for name in bodies:
        assert rows["group-" + name] == rows["alone-" + name], name
    for job in jobs:
        item = job.result[0]
        stored = store.get_item(root.id, item.name, actor=owner)
        loaded = ITEM_COLUMNS.keys  # what a read loads (deferred columns left out)
        assert {key: getattr(item, key) for key in loaded} == {key: getattr(stored, key) for key in loaded}
