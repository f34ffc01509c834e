"""After-commit change notifications, in this process and across processes.

Listeners are plain callables taking a :class:`ChangeEvent`. They are called from
whatever thread committed the write (or from the PostgreSQL listener thread), so
a listener that lives on an event loop must hop onto it itself
(``loop.call_soon_threadsafe``). On PostgreSQL the Store also issues
``pg_notify`` inside the write transaction — PostgreSQL delivers it only if the
transaction commits — and every other process's :class:`PgListener` passes it on
to its own listeners.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

CHANNEL = "kantoor_changes"
# Identifies this process so it ignores its own NOTIFY echoes (it already told
# its listeners directly after commit).
PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class ChangeEvent:
    collection_id: int
    owner_id: int
    kind: str  # created|modified|deleted|collection
    modseq: int
    item_name: str = ""
    item_uid: int | None = None

    def to_payload(self) -> str:
        return json.dumps({"p": PROCESS_ID, **asdict(self)}, separators=(",", ":"))

    @classmethod
    def from_payload(cls, payload: str) -> tuple[str, ChangeEvent]:
        data = json.loads(payload)
        origin = data.pop("p", "")
        return origin, cls(**data)


Listener = Callable[[ChangeEvent], None]


class Notifier:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener``; returns a function that unregisters it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: ChangeEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # one broken listener must not starve the others
                log.exception("change listener failed")


class PgListener:
    """A thread that LISTENs on PostgreSQL and republishes other processes' changes."""

    def __init__(self, dsn: str, notifier: Notifier) -> None:
        self.dsn = dsn
        self.notifier = notifier
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kantoor-pg-listen", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._ready.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=100):
                            self._deliver(note.payload)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("PostgreSQL LISTEN connection lost; reconnecting")
                self._stop.wait(1.0)

    def _deliver(self, payload: str) -> None:
        try:
            origin, event = ChangeEvent.from_payload(payload)
        except (ValueError, TypeError):
            log.warning("ignoring malformed change notification")
            return
        if origin != PROCESS_ID:
            self.notifier.publish(event)
