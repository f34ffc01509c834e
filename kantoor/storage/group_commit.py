"""Group commit: writes that wait for the write transaction at the same time share one.

Every write transaction pays BEGIN, the collection lock, the commit and its fsync
(``PRAGMA synchronous=FULL``: a reply means the data is on disk). With several SMTP sessions
or WebDAV clients per process those were most of a small write's cost. A
:class:`GroupCommit` queues the callers' prepared jobs; the first caller to get the turn
writes everything queued then in ONE transaction (``write_group``), and each caller returns
only after that commit, with its own result or its own error. If anything in the group
fails (a full quota, a lock, a precondition, the commit), nothing of it is kept and each
job is written again alone (``write_one``), so one caller's refusal is never another's.

Used by deliveries (:mod:`kantoor.storage.mail`) and by PUTs (:mod:`kantoor.storage.items`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Generic, TypeVar

from kantoor.storage.errors import StorageError


class GroupJob:
    """A prepared write waiting for its group; ``result`` or ``error`` is set by whoever writes it."""

    result: Any = None
    error: BaseException | None = None
    done: bool = False


J = TypeVar("J", bound=GroupJob)


def take_all(pending: list[J]) -> tuple[list[J], list[J]]:
    """(the group to write now, what waits for the next one): everything."""
    return pending, []


class GroupCommit(Generic[J]):
    """One Store's jobs of one kind waiting for a write transaction, and the turn to write them.

    ``gather_seconds``: how long the group's first caller waits for more before it writes, at most.
    It waits while jobs are being prepared in this process (:meth:`preparing`), and with
    ``expect_recent`` also until as many jobs wait as waited or were written at once while the
    last group was written (PostgreSQL's commit_delay with commit_siblings is the same idea):
    clients that take turns then share groups instead of forming two that alternate. No wait
    for a job that arrives alone. ``pick`` splits what waits into the group and the rest.
    """

    def __init__(self, writer_turn: Callable[[], AbstractContextManager[None]],
                 write_group: Callable[[list[J]], list[Any]], write_one: Callable[[J], Any], *,
                 gather_seconds: float, expect_recent: bool = False,
                 pick: Callable[[list[J]], tuple[list[J], list[J]]] = take_all,
                 interrupted: str = "write interrupted") -> None:
        self._writer_turn = writer_turn
        self._write_group = write_group
        self._write_one = write_one
        self._gather_seconds = gather_seconds
        self._expect_recent = expect_recent
        self._pick = pick
        self._interrupted = interrupted
        self._lock = threading.Lock()  # guards the fields below
        self.leader = threading.Lock()  # held by whoever writes a group (tests hold it to gather one)
        self._arrived = threading.Condition(self._lock)  # a job joined, or one's preparation ended
        self._pending: list[J] = []
        self._preparing = 0  # jobs of this process being prepared now, about to join ``_pending``
        self._writing = 0  # jobs in the group being written now
        self._seen = 0  # the most jobs waiting or being written at once since the last group was picked

    @property
    def waiting(self) -> int:
        """Jobs waiting for a group now."""
        with self._lock:
            return len(self._pending)

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Count a job as being prepared (body stored, indexed) while the block runs: a group waits for it."""
        with self._lock:
            self._preparing += 1
        try:
            yield
        finally:
            with self._lock:
                self._preparing -= 1
                self._arrived.notify_all()

    def run(self, job: J) -> Any:
        """Write ``job`` with whatever waits at the same time; its result once committed (or its error)."""
        with self._lock:
            self._pending.append(job)
            self._seen = max(self._seen, self._writing + len(self._pending))
            self._arrived.notify_all()
        while not job.done:
            with self.leader:
                if job.done:  # written by the group before
                    break
                self._gather()
                # On SQLite the group is taken only once it is this process's turn to write (the gate is
                # re-entrant, so the transactions below pass it at once): what arrives while another server
                # process writes joins this group instead of waiting for a transaction of its own.
                with self._writer_turn():
                    with self._lock:
                        batch, self._pending = self._pick(self._pending)
                        self._writing = len(batch)
                        self._seen = len(batch) + len(self._pending)
                    try:
                        self.commit(batch)
                    finally:
                        with self._lock:
                            self._writing = 0
        if job.error is not None:
            raise job.error
        return job.result

    def _gather(self) -> None:
        with self._lock:
            expected = self._seen if self._expect_recent else 0
            deadline = time.monotonic() + self._gather_seconds
            while ((self._preparing or len(self._pending) < expected)
                   and (left := deadline - time.monotonic()) > 0):
                self._arrived.wait(left)

    def commit(self, batch: list[J]) -> None:
        """Write ``batch`` now (the caller has the turn): together, or each alone if that fails."""
        try:
            if len(batch) > 1:
                try:
                    results = self._write_group(batch)
                except Exception:  # noqa: BLE001 - redone one by one below, where each gets its own answer
                    pass
                else:
                    for job, result in zip(batch, results, strict=True):
                        job.result = result
                    return
            for job in batch:
                try:
                    job.result = self._write_one(job)
                except BaseException as exc:  # handed to the caller's thread
                    job.error = exc
        finally:
            for job in batch:
                if job.result is None and job.error is None:
                    job.error = StorageError(self._interrupted)
                job.done = True


__all__ = ["GroupCommit", "GroupJob", "take_all"]
