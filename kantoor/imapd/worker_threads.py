"""The IMAP server's thread pool for its blocking work (Store calls), on the asyncio reactor: :func:`in_thread`.

Twisted's ThreadPool hands every task through a coordinator (its ``Team``: a lock worker, a
queue per worker, condition variables, a context call) and brings the result back with
``callFromThread``, which on the asyncio reactor is a ``callLater(0)``: a DelayedCall, the
loop's timer cancelled and set again, a timer turn. Per APPEND that was ~0.12 ms of the worker
thread's CPU and ~0.07 ms of the reactor thread's (py-spy, bench/imap.py). Here a task is a lock
and one ``SimpleQueue.put`` (C), and its result goes back with the loop's own ``call_soon_threadsafe``.

Every IMAP command and mailbox view that calls the Store goes through :func:`in_thread` (one pool,
not this one for some and Twisted's for others). The pool is as large as Twisted's
(``server.worker_threads``, which the server suggests to the reactor; threads started as needed),
made lazily in the process that uses it (after a pre-fork), and stopped with the reactor:
like Twisted's, stopping lets the tasks already queued finish first (a reply is sent only
after the commit).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

log = logging.getLogger(__name__)

_Task = tuple[Callable[[], Any], Deferred, Any] | None  # (work, its Deferred, the loop); None stops a thread


class WorkerThreads:
    """Threads started as needed up to ``size``; an idle thread waits on its own queue and the one that went idle
    last takes the next task (one warm thread serves a single session, as in Twisted's pool)."""

    def __init__(self, loop: Any, size: int) -> None:
        self._loop = loop
        self._size = max(1, size)
        self._lock = threading.Lock()
        self._idle: list[SimpleQueue[_Task]] = []  # a stack: the last to go idle is woken first
        self._backlog: deque[_Task] = deque()  # tasks waiting for a thread when all are busy
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def run(self, work: Callable[[], Any]) -> Deferred:
        """``work()`` in a pool thread; the Deferred fires on the loop's thread."""
        d: Deferred = Deferred()
        task = (work, d, self._loop)
        with self._lock:
            if self._idle:
                self._idle.pop().put(task)
                return d
            self._backlog.append(task)
            if len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, name=f"kantoor-imap-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
        return d

    def stop(self) -> None:
        """Finish the queued tasks, then end the threads."""
        with self._lock:
            self._stopping = True
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for inbox in idle:
            inbox.put(None)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()

    def _next(self, inbox: SimpleQueue[_Task]) -> _Task:
        with self._lock:
            if self._backlog:
                return self._backlog.popleft()
            if self._stopping:
                return None
            self._idle.append(inbox)
        return inbox.get()

    def _work(self) -> None:
        inbox: SimpleQueue[_Task] = SimpleQueue()
        while (task := self._next(inbox)) is not None:
            work, d, loop = task
            del task
            try:
                outcome, fire = work(), d.callback
            except BaseException:  # handed to the Deferred, as deferToThread does
                outcome, fire = Failure(), d.errback
            try:
                loop.call_soon_threadsafe(fire, outcome)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                log.warning("IMAP task finished after the event loop closed")
            del work, d, fire, outcome  # nothing of a finished task stays alive in an idle thread


_pools: dict[int, WorkerThreads] = {}  # by id(reactor), in this process
_lock = threading.Lock()


def _forget_after_fork() -> None:
    _pools.clear()  # the threads did not survive the fork


os.register_at_fork(after_in_child=_forget_after_fork)


def worker_threads(reactor: Any, size: int) -> WorkerThreads | None:
    """This process's pool for ``reactor``, made at first use; None if it is not Twisted's asyncio reactor."""
    pool = _pools.get(id(reactor))
    if pool is not None:
        return pool
    loop = getattr(reactor, "_asyncioEventloop", None)  # Twisted's AsyncioSelectorReactor
    if loop is None:
        return None
    with _lock:
        pool = _pools.get(id(reactor))
        if pool is None:
            pool = _pools[id(reactor)] = WorkerThreads(loop, size)

            def stop() -> None:
                _pools.pop(id(reactor), None)
                pool.stop()

            reactor.addSystemEventTrigger("during", "shutdown", stop)
    return pool


def in_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
    """``deferToThread(func, *args, **kwargs)`` for the IMAP server: on this module's pool when the global reactor
    is Twisted's asyncio one (``kantoor serve``), with as many threads as Twisted's pool has; else on Twisted's."""
    from twisted.internet import reactor

    threads = reactor.getThreadPool()  # type: ignore[attr-defined]
    pool = worker_threads(reactor, threads.max)
    if pool is None:
        return deferToThreadPool(reactor, threads, func, *args, **kwargs)
    return pool.run(functools.partial(func, *args, **kwargs) if args or kwargs else func)
