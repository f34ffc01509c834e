"""The SQLite writer gate: one writer at a time, woken the moment the previous one commits.

SQLite admits one writer at a time. A connection whose BEGIN IMMEDIATE finds the
write lock taken is parked in SQLite's busy handler, which polls with sleeps of up
to 100 ms: eight concurrent PUTs spent half their time asleep (py-spy,
bench/webdav.py), and two server processes writing at once (``server.processes``)
delivered mail slower than one (bench/smtp.py). So writers queue here first:

- the threads of one process on a re-entrant lock;
- the processes sharing the database file on an exclusive ``flock`` of a lock
  file beside it, which the kernel hands to the next waiter at once and releases
  if its holder dies.

SQLite's busy timeout still arbitrates with anything that writes without the gate
(``sqlite3`` by hand, an older server).
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref

from sqlalchemy import Engine


class WriteGate:
    def __init__(self, lock_path: str | None) -> None:
        self._threads = threading.RLock()
        self._depth = 0  # nesting of this process's holder: only the outermost takes the file lock
        self._fd: int | None = None
        if lock_path is not None:
            self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def acquire(self) -> None:
        self._threads.acquire()
        if self._depth == 0 and self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._threads.release()
                raise
        self._depth += 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


# One gate per SQLite engine (every Store on it shares it).
_GATES: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def write_gate(engine: Engine) -> WriteGate:
    """The gate of ``engine`` (a SQLite engine); an in-memory database gets no file lock."""
    with _GATES_LOCK:
        gate = _GATES.get(engine)
        if gate is None:
            database = engine.url.database
            on_disk = bool(database) and database != ":memory:" and not database.startswith("file::memory:")
            gate = _GATES[engine] = WriteGate(f"{database}-writer.lock" if on_disk else None)
        return gate
