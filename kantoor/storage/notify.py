"""After-commit change notifications, in this process and across processes.

Listeners are plain callables taking a :class:`ChangeEvent`. They are called from
whatever thread committed the write (or from a cross-process receiver thread), so
a listener that lives on an event loop must hop onto it itself
(``loop.call_soon_threadsafe``).

Across processes:
- On PostgreSQL the Store issues ``pg_notify`` inside the write transaction —
  PostgreSQL delivers it only if the transaction commits — and every other
  process's :class:`PgListener` passes it on to its own listeners.
- On SQLite every process sharing the database is on the same machine (SQLite
  cannot be shared over a network), so a :class:`SiblingBus` sends each committed
  event as a datagram to the other processes of the same data directory (the
  pre-forked workers of ``kantoor serve``, or separately started ones).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHANNEL = "kantoor_changes"
# Suffix of a sibling's announcement while no listener in it wants events (see SiblingBus).
QUIET = ".quiet"
# Identifies this process so it ignores its own NOTIFY echoes (it already told
# its listeners directly after commit).
PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _new_process_id() -> None:
    # A pre-forked worker is a process of its own: it must not take its siblings'
    # events for echoes of its own.
    global PROCESS_ID
    PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


os.register_at_fork(after_in_child=_new_process_id)


@dataclass(frozen=True)
class ChangeEvent:
    collection_id: int
    owner_id: int
    kind: str  # created|modified|deleted|collection
    modseq: int
    item_name: str = ""
    item_uid: int | None = None

    def to_payload(self) -> str:
        # The instance's own __dict__ (its fields, flat values): dataclasses.asdict deep-copies recursively,
        # and with json.dumps it was 15 % of a small WebDAV PUT's CPU (py-spy, bench/webdav.py).
        return json.dumps({"p": PROCESS_ID, **self.__dict__}, separators=(",", ":"))

    @classmethod
    def from_payload(cls, payload: str) -> tuple[str, ChangeEvent]:
        data = json.loads(payload)
        origin = data.pop("p", "")
        return origin, cls(**data)


Listener = Callable[[ChangeEvent], None]


class Notifier:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._forwarders: list[Listener] = []
        self._on_subscribe: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def on_subscribe(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` in every :meth:`subscribe`, after the listener is registered and before it returns."""
        with self._lock:
            self._on_subscribe.append(hook)

    def has_listeners(self) -> bool:
        with self._lock:
            return bool(self._listeners)

    def forward_to(self, forwarder: Listener) -> None:
        """Also hand every event committed *in this process* to ``forwarder`` (a cross-process bus)."""
        with self._lock:
            self._forwarders.append(forwarder)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener``; returns a function that unregisters it."""
        with self._lock:
            self._listeners.append(listener)
            hooks = list(self._on_subscribe)
        for hook in hooks:
            hook()

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: ChangeEvent, remote: bool = False) -> None:
        """Tell this process's listeners; an event committed here (not ``remote``) also goes to the forwarders."""
        with self._lock:
            listeners = list(self._listeners) if remote else [*self._listeners, *self._forwarders]
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
            self.notifier.publish(event, remote=True)


class SiblingBus:
    """Change events between the processes of one SQLite data directory, as UNIX datagrams.

    Each process binds an abstract-namespace datagram socket (Linux: no file to
    clean up, gone when the process dies) and announces itself with an empty file
    named after its process id in ``directory``. A committed event is sent to
    every announced sibling; a sibling that no longer answers (ECONNREFUSED) has
    died, and its announcement is removed. Datagrams are never split or merged,
    so one event is one message. A full receive buffer (a sibling that does not
    keep up) drops the event for that sibling rather than blocking the writer:
    IMAP sessions also learn of changes at their next command.

    A process in which nobody listens (no IMAP session has a mailbox selected) renames
    its announcement to ``<identity>.quiet`` and is sent nothing: receiving and decoding
    every delivery's event only to drop it cost an idle sibling ~60–250 µs of CPU per
    message. It becomes reachable again inside :meth:`Notifier.subscribe`, before the new
    listener's session goes on, so no event committed after a subscription is missed
    (a writer lists the announcements after its commit). Going quiet is lazy: the
    receiver does it when an event arrives and no listener is left.
    """

    def __init__(self, directory: Path, notifier: Notifier, identity: str | None = None) -> None:
        self.directory = Path(directory)
        self.notifier = notifier
        # The abstract name is scoped by the directory, so two data directories
        # on one machine never hear each other.
        self._scope = hashlib.sha256(str(self.directory.resolve()).encode()).hexdigest()[:16]
        self._identity = identity or PROCESS_ID
        self._socket: socket.socket | None = None
        self._sender: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Whether the announcement is the reachable one (``identity``) or ``identity.quiet``;
        # changed only under _state_lock, together with the file's name.
        self._reachable = False
        self._state_lock = threading.Lock()

    @staticmethod
    def supported() -> bool:
        return sys.platform.startswith("linux")

    def _address(self, identity: str) -> bytes:
        return f"\0kantoor-{self._scope}-{identity}".encode()

    def attach(self) -> None:
        """Send this process's committed events to the siblings (all a short-lived ``kantoor`` command needs)."""
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
            self.notifier.forward_to(self.send)

    @property
    def listening(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Also hear the siblings' events (a server process)."""
        self.attach()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self._address(self._identity))
        self._socket.settimeout(0.5)
        self._forget_dead_quiet_siblings()
        with self._state_lock:
            self._reachable = self.notifier.has_listeners()
            self._announcement(self._reachable).touch()
        self.notifier.on_subscribe(self._wanted)
        self._thread = threading.Thread(target=self._receive, name="kantoor-sibling-bus", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            with self._state_lock:
                for reachable in (True, False):
                    self._announcement(reachable).unlink(missing_ok=True)
        for sock in (self._socket, self._sender):
            if sock is not None:
                sock.close()

    def send(self, event: ChangeEvent) -> None:
        if self._sender is None or self._stop.is_set():
            return
        try:
            siblings = [name for name in os.listdir(self.directory)
                        if name != self._identity and not name.endswith(QUIET)]
        except FileNotFoundError:
            return
        if not siblings:
            return  # a single process: nobody to tell, and no payload to build
        payload = event.to_payload().encode()
        with self._send_lock:
            for name in siblings:
                try:
                    self._sender.sendto(payload, self._address(name))
                except ConnectionRefusedError:
                    (self.directory / name).unlink(missing_ok=True)  # that process is gone
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                        log.warning("cannot notify sibling process %s: %s", name, exc)

    def _receive(self) -> None:
        assert self._socket is not None
        while not self._stop.is_set():
            try:
                payload = self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            try:
                origin, event = ChangeEvent.from_payload(payload.decode())
            except (ValueError, TypeError):
                log.warning("ignoring malformed sibling notification")
                continue
            if origin != self._identity:
                self.notifier.publish(event, remote=True)
            if self._reachable and not self.notifier.has_listeners():
                self._set_reachable(False)

    # -- reachable or quiet -------------------------------------------------------------
    def _announcement(self, reachable: bool) -> Path:
        return self.directory / (self._identity if reachable else self._identity + QUIET)

    def _wanted(self) -> None:
        """A listener subscribed: be sent events again (before ``subscribe`` returns). Always through the lock:
        the receiver may be going quiet right now, with ``_reachable`` still True."""
        self._set_reachable(True)

    def _set_reachable(self, reachable: bool) -> None:
        with self._state_lock:
            if self._stop.is_set():
                return
            # Decided under the lock: a subscribe racing with going quiet either registered its
            # listener before this check (and we stay reachable), or its _wanted() runs after
            # this lock is released and makes us reachable again.
            if not reachable and self.notifier.has_listeners():
                return
            if reachable == self._reachable:
                return
            try:
                os.rename(self._announcement(not reachable), self._announcement(reachable))
            except FileNotFoundError:  # the announcement was removed under us: make it anew
                self.directory.mkdir(parents=True, exist_ok=True)
                self._announcement(reachable).touch()
            self._reachable = reachable

    def _forget_dead_quiet_siblings(self) -> None:
        """Remove quiet announcements of processes that died without a clean stop (nobody sends to them,
        so no ECONNREFUSED would ever tell)."""
        try:
            names = [name for name in os.listdir(self.directory) if name.endswith(QUIET)]
        except FileNotFoundError:
            return
        for name in names:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
                try:
                    probe.connect(self._address(name[:-len(QUIET)]))
                except ConnectionRefusedError:
                    (self.directory / name).unlink(missing_ok=True)
                except OSError:
                    pass
