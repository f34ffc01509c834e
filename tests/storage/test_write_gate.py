"""The write gate and the request-scoped read session of ``StoreBase`` (storage/transactions.py),
on SQLite and PostgreSQL.

ARCHITECTURE invariant 1: every write is one transaction. Writers of one process queue
on a gate (SQLite) or on the collection's row lock (PostgreSQL ``FOR UPDATE``); either
way both commit, in the order they got in, with no "database is locked" error. Reads
of one request share one session (``request_scope``), and a read after a write of the
same request must see that write.
"""

from __future__ import annotations

import threading

import pytest

from kantoor.storage import NotFound
from kantoor.storage.notify import ChangeEvent

WAIT = 30  # seconds: an upper bound for every wait, never a timing assertion


def _drive(core, login="gate@example.org"):  # type: ignore[no-untyped-def]
    account = core.store.create_account(login, "", "standard")
    root = core.store.find_collection(account.principal_id, "folder", "", account.principal_id)
    return account.principal_id, root.id


def test_a_writer_waits_for_the_one_inside_and_both_commit_in_order(core) -> None:  # type: ignore[no-untyped-def]
    owner, folder = _drive(core)
    first_inside, release_first = threading.Event(), threading.Event()
    first_thread: list[int] = []

    def hold_first(stage: str) -> None:
        # Test seam inside put_item's write transaction, after the collection is locked.
        if stage == "before_commit" and threading.get_ident() in first_thread:
            first_inside.set()
            assert release_first.wait(WAIT)

    core.store.fault_hook = hold_first
    events: list[ChangeEvent] = []
    unsubscribe = core.store.notifier.subscribe(events.append)
    errors: list[BaseException] = []

    def write(name: str, hold: bool) -> None:
        if hold:
            first_thread.append(threading.get_ident())
        try:
            core.store.put_item(folder, name, name.encode() * 100, "text/plain", actor=owner)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    first = threading.Thread(target=write, args=("first.txt", True))
    second = threading.Thread(target=write, args=("second.txt", False))
    try:
        first.start()
        assert first_inside.wait(WAIT), "the first writer never got inside its transaction"
        second.start()
        second.join(0.5)
        assert second.is_alive(), "the second writer committed while the first still held its transaction"
        release_first.set()
        first.join(WAIT)
        second.join(WAIT)
    finally:
        release_first.set()
        core.store.fault_hook = None
        unsubscribe()
    assert not first.is_alive() and not second.is_alive()
    assert errors == []
    items = {i.name: i for i in core.store.list_items(folder, actor=owner)}
    assert set(items) == {"first.txt", "second.txt"}
    assert items["first.txt"].modseq < items["second.txt"].modseq
    changes = core.store.changes_since(folder, 0, actor=owner)
    assert [c.item_name for c in changes] == ["first.txt", "second.txt"]
    # Each committed write notified once, with its modseq (publishing happens after each
    # commit, outside the gate, so two threads' notifications may interleave either way).
    assert sorted((e.item_name, e.modseq) for e in events) == [(c.item_name, c.modseq) for c in changes]
    assert core.store.usage(owner)["documents"] == sum(i.size for i in items.values())


def test_concurrent_writers_all_commit_with_distinct_increasing_modseqs(core) -> None:  # type: ignore[no-untyped-def]
    owner, folder = _drive(core)
    threads, per_thread = 4, 10
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    seen: dict[int, list[int]] = {}

    def writer(n: int) -> None:
        barrier.wait(WAIT)
        mine = seen.setdefault(n, [])
        try:
            for k in range(per_thread):
                item, created = core.store.put_item(folder, f"t{n}-{k}.bin", bytes([n]) * (n + 1) * 100,
                                                    "application/octet-stream", actor=owner)
                assert created
                mine.append(item.modseq)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    assert not any(t.is_alive() for t in workers)
    assert errors == []
    # Each thread's writes are ordered as it made them; together they numbered every change once.
    for modseqs in seen.values():
        assert modseqs == sorted(modseqs)
    assert sorted(m for modseqs in seen.values() for m in modseqs) == list(range(1, threads * per_thread + 1))
    assert len(core.store.list_items(folder, actor=owner)) == threads * per_thread
    assert core.store.usage(owner)["documents"] == sum((n + 1) * 100 * per_thread for n in range(threads))


def test_a_read_after_a_write_in_one_request_scope_sees_the_write(core) -> None:  # type: ignore[no-untyped-def]
    owner, folder = _drive(core)
    with core.store.request_scope():
        # The first read opens the scope's shared session (and its transaction).
        with pytest.raises(NotFound):
            core.store.get_item(folder, "new.txt", actor=owner)
        assert core.store.list_items(folder, actor=owner) == []
        core.store.put_item(folder, "new.txt", b"hello", "text/plain", actor=owner)
        assert core.store.get_item(folder, "new.txt", actor=owner).size == 5
        assert [i.name for i in core.store.list_items(folder, actor=owner)] == ["new.txt"]
        core.store.put_item(folder, "new.txt", b"hello again", "text/plain", actor=owner)
        assert core.store.get_item(folder, "new.txt", actor=owner).size == 11
        core.store.delete_item(folder, "new.txt", actor=owner)
        with pytest.raises(NotFound):
            core.store.get_item(folder, "new.txt", actor=owner)


def test_reads_of_a_request_scope_share_one_session_until_a_write(core) -> None:  # type: ignore[no-untyped-def]
    owner, folder = _drive(core)
    with core.store.request_scope():
        with core.store.read() as first, core.store.read() as nested:
            assert first is nested
        with core.store.read() as again:
            assert again is first
        core.store.put_item(folder, "x.txt", b"x", "text/plain", actor=owner)
        with core.store.read() as after_write:
            assert after_write is not first
    # Outside a scope every read has a session of its own.
    with core.store.read() as a, core.store.read() as b:
        assert a is not b


def test_another_threads_write_is_seen_once_the_scope_ends_its_read(core) -> None:  # type: ignore[no-untyped-def]
    owner, folder = _drive(core)
    with core.store.request_scope():
        assert core.store.list_items(folder, actor=owner) == []
        other = threading.Thread(target=core.store.put_item,
                                 args=(folder, "theirs.txt", b"t", "text/plain"), kwargs={"actor": owner})
        other.start()
        other.join(WAIT)
        assert not other.is_alive()
        core.store.end_shared_read()
        assert [i.name for i in core.store.list_items(folder, actor=owner)] == ["theirs.txt"]


HOLDER = """
import sys, time
from pathlib import Path
from kantoor.storage.write_gate import WriteGate
gate = WriteGate(sys.argv[1])
gate.acquire()
print("HELD", flush=True)
sys.stdin.readline()             # until the test says so
Path(sys.argv[2]).write_text("written while holding the gate")
gate.release()
time.sleep(30)
"""


def test_the_gate_excludes_writers_of_other_processes_on_one_database_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two server processes on one SQLite file (server.processes > 1) queue on the gate's file lock."""
    import subprocess
    import sys

    from kantoor.storage.write_gate import WriteGate

    lock, marker = tmp_path / "db-writer.lock", tmp_path / "marker"
    other = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(marker)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline().strip() == "HELD"
        gate = WriteGate(str(lock))
        acquired = threading.Event()
        seen: list[bool] = []

        def take() -> None:
            gate.acquire()
            seen.append(marker.exists())
            acquired.set()
            gate.release()

        taker = threading.Thread(target=take, daemon=True)
        taker.start()
        assert not acquired.wait(0.5)  # the other process holds it
        other.stdin.write("go\n")
        other.stdin.flush()
        assert acquired.wait(WAIT)
        assert seen == [True]  # we got in only after the holder had finished its write
        taker.join(WAIT)
        gate.close()
    finally:
        other.kill()
        other.communicate(timeout=10)  # also closes its pipes
