"""``kantoor serve`` with ``server.processes`` > 1: a supervisor and N identical workers.

One Python process runs on one CPU core at a time (the GIL); a mail or file
server on a multi-core machine needs several processes to use it, as Dovecot,
Postfix and nginx do. The supervisor does what must happen once — migrations,
the first administrator, the TLS certificate — binds and listens on every port,
forks the workers and prints the banner when all of them listen. Each worker is
a complete server (:func:`kantoor.server.serve`) accepting from the listening
sockets it inherited, which it shares out with its siblings by their numbers of
open connections (kantoor.accept_balance). Workers agree with each other
the way separately started ``kantoor serve`` processes do: through the database
and cross-process change notifications (ARCHITECTURE invariant 2). A worker that
dies is replaced; SIGTERM/SIGINT stop them all gracefully.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import select
import signal
import socket
import sys
import time

from kantoor.accept_balance import NOT_ACCEPTING, Balancing, ConnectionTable
from kantoor.config import Settings
from kantoor.core import open_core
from kantoor.listening import bind_all, bound_port, listen_all

log = logging.getLogger("kantoor.prefork")

READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0
# A worker that dies this soon after starting, this many times in a row, is not
# going to run: stop instead of forking it forever.
EARLY_DEATH_SECONDS = 10.0
MAX_EARLY_DEATHS = 5
_PR_SET_PDEATHSIG = 1


@dataclasses.dataclass
class _Worker:
    pid: int
    started: float
    ready_fd: int | None  # read end of its ready pipe until it reported
    slot: int  # its row in the connection table (a replacement takes the same one)


def _die_with_supervisor(supervisor: int) -> None:
    # Linux: if the supervisor is killed (SIGKILL, OOM) its workers must not
    # keep serving on their own; they get SIGTERM and stop gracefully.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before prctl took effect
        os._exit(1)


def _run_worker(settings: Settings, reserved: dict[str, socket.socket], balancing: Balancing, ready_w: int,
                supervisor: int) -> None:
    """In the forked child: serve until stopped, then leave without returning into the supervisor's code."""
    from kantoor.server import WorkerRole, run_one

    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        _die_with_supervisor(supervisor)

        def ready() -> None:
            os.write(ready_w, b"1")
            os.close(ready_w)

        code = run_one(settings, WorkerRole(ready, reserved, balancing))
    except BaseException:
        log.exception("server worker failed")
    finally:
        logging.shutdown()
        os._exit(code)


class Supervisor:
    def __init__(self, settings: Settings, processes: int, reserved: dict[str, socket.socket]) -> None:
        self.processes = processes
        self.reserved = reserved
        ports = {name: bound_port(sock) for name, sock in reserved.items()}
        # Workers bind the ports the supervisor holds, not 0 (which would give each its own).
        self.worker_settings = dataclasses.replace(settings, ports=dataclasses.replace(settings.ports, **ports))
        self.ports = ports
        self.connections = ConnectionTable(processes)
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.early_deaths = 0

    def spawn(self, slot: int) -> None:
        ready_r, ready_w = os.pipe()
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            for other in self.workers.values():  # the siblings' pipes are the supervisor's business
                if other.ready_fd is not None:
                    os.close(other.ready_fd)
            _run_worker(self.worker_settings, self.reserved, Balancing(self.connections, slot), ready_w, supervisor)
        os.close(ready_w)
        self.workers[pid] = _Worker(pid, time.monotonic(), ready_r, slot)

    def wait_ready(self) -> bool:
        """Until every worker reported that it listens; False if one died first or time ran out."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while any(w.ready_fd is not None for w in self.workers.values()):
            pending = {w.ready_fd: w for w in self.workers.values() if w.ready_fd is not None}
            timeout = deadline - time.monotonic()
            if timeout <= 0 or self.stopping:
                return False
            readable, _, _ = select.select(list(pending), [], [], min(timeout, 0.5))
            for fd in readable:
                worker = pending[fd]
                said = os.read(fd, 1)
                os.close(fd)
                worker.ready_fd = None
                if said != b"1":  # end of file: it exited before listening
                    return False
        return True

    def reap(self) -> None:
        """Collect exited workers; replace them unless stopping (or they keep dying at start)."""
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            if worker.ready_fd is not None:
                os.close(worker.ready_fd)
            if self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            log.warning("server worker %d exited (%d); starting another", pid, code)
            if time.monotonic() - worker.started < EARLY_DEATH_SECONDS:
                self.early_deaths += 1
                if self.early_deaths >= MAX_EARLY_DEATHS:
                    log.error("server workers keep dying at start; stopping")
                    self.stopping = True
                    return
            else:
                self.early_deaths = 0
            self.connections.set(worker.slot, NOT_ACCEPTING)  # its connections died with it; none for its successor yet
            self.spawn(worker.slot)

    def stop_all(self) -> None:
        self.stopping = True
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while self.workers and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        for pid in list(self.workers):
            log.warning("server worker %d did not stop; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.workers.clear()
        for sock in self.reserved.values():
            sock.close()


def supervise(settings: Settings, processes: int) -> int:
    """Prepare once, fork ``processes`` workers, keep them running until SIGTERM/SIGINT."""
    from kantoor.server import bootstrap_admin, print_banner
    from kantoor.tls import ensure_certificate

    # Done before any worker exists, so no two processes race to migrate or to
    # create the first administrator. The engine is closed again: a database
    # connection must not be shared across fork.
    core = open_core(settings)
    try:
        boot = bootstrap_admin(core)
    finally:
        core.close()
    tls = ensure_certificate(settings)
    try:
        reserved = bind_all(settings)
        listen_all(reserved)
    except OSError as exc:
        print(f"kantoor: cannot start: {exc}", file=sys.stderr)
        return 1

    supervisor = Supervisor(settings, processes, reserved)

    def stop(_signum: int, _frame: object) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for slot in range(processes):
            supervisor.spawn(slot)
        if not supervisor.wait_ready():
            print("kantoor: cannot start: a server worker stopped during start-up (see the log above)",
                  file=sys.stderr)
            return 1
        log.info("%d server processes: %s", processes, " ".join(str(pid) for pid in supervisor.workers))
        print_banner(settings, boot, supervisor.ports, tls)
        while not supervisor.stopping:
            supervisor.reap()
            time.sleep(0.2)
        log.info("stopping")
        return 1 if supervisor.early_deaths >= MAX_EARLY_DEATHS else 0
    finally:
        supervisor.stop_all()
