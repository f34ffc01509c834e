"""CPU time used by a server's whole process tree (Linux /proc), to go beside wall-clock times.

On a shared, busy machine wall-clock times stretch with other people's load, which
compresses or inflates ratios; the CPU time a server spends on an operation hardly does.
Kantoor is one process with threads; Dovecot and Postfix are a master with children
(one imap process per session, smtpd/cleanup/qmgr/virtual…). For every process in the
tree this sums the run time of its live threads (``/proc/<pid>/task/*/schedstat``,
nanoseconds), the user+system time of its threads that have already ended (the process's
``utime``/``stime`` less its live threads', clock ticks) and of children it has already
reaped (``cutime``/``cstime`` in ``/proc/<pid>/stat``, clock ticks).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    return _stat_fields_of(f"/proc/{pid}/stat")


def _stat_fields_of(path: str) -> list[str]:
    text = Path(path).read_text()
    return text[text.rindex(")") + 2:].split()  # fields from "state" on; the name may hold spaces


def tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> float:
    """CPU seconds the process tree under ``root`` has used so far (0.0 if it is gone)."""
    total_ns = 0.0
    for pid in tree(root):
        try:
            fields = _stat_fields(pid)
            total_ns += (int(fields[13]) + int(fields[14])) * _TICK_NS  # cutime, cstime: reaped children
            live_ticks = 0
            for task in os.listdir(f"/proc/{pid}/task"):
                total_ns += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
                task_fields = _stat_fields_of(f"/proc/{pid}/task/{task}/stat")
                live_ticks += int(task_fields[11]) + int(task_fields[12])
            # Threads that have ended (a pool's idle thread retired, a thread per request) are in the
            # process's utime+stime but no longer in any task: add what they used, to the tick.
            total_ns += max(0, int(fields[11]) + int(fields[12]) - live_ticks) * _TICK_NS
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue  # exited meanwhile: its time shows up in its parent's cutime
    return total_ns / 1e9


def rss_kib(roots: list[int]) -> int:
    """Resident memory (KiB) of the process trees under ``roots``: a master's children, Kantoor's workers."""
    total = 0
    for pid in {p for root in roots for p in tree(root)}:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


IDLE_STEP = 0.25


def wait_idle(root: int, time_limit: float) -> float:
    """Wait until the process tree of ``root`` is idle — the work a server leaves for after its replies done
    (Kantoor writes the SEARCH rows of a burst once it pauses: kantoor.storage.search_backlog) — so that work
    is counted in its CPU and does not slow what is measured next, on either server. Idle: under 5 % of a
    core over a quarter second. Returns the seconds waited (at most ``time_limit``)."""
    started = time.perf_counter()
    last = cpu_seconds(root)
    while time.perf_counter() - started < time_limit:
        time.sleep(IDLE_STEP)
        now = cpu_seconds(root)
        if now - last < IDLE_STEP * 0.05:
            break
        last = now
    return time.perf_counter() - started
