"""The IMAP server's thread pool for its blocking work (Store calls), on the asyncio reactor: :func:`in_thread`.

The pool is :class:`kantoor.worker_threads.WorkerThreads` (a task is one queue put, its outcome one
``call_soon_threadsafe``), answering with Deferreds. Twisted's ThreadPool hands every task through
a coordinator and answers with ``callFromThread``, on the asyncio reactor a ``callLater(0)``: per
APPEND that was ~0.12 ms of the worker thread's CPU and ~0.07 ms of the reactor thread's.

Every IMAP command and mailbox view that calls the Store goes through :func:`in_thread` (one pool,
not this one for some and Twisted's for others). The pool is as large as Twisted's
(``server.worker_threads``, which the server suggests to the reactor; threads started as needed),
made lazily in the process that uses it (after a pre-fork), and stopped with the reactor:
like Twisted's, stopping lets the tasks already queued finish first (a reply is sent only
after the commit).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from kantoor.worker_threads import WorkerThreads, join


class DeferredThreads:
    """A :class:`WorkerThreads` pool whose tasks answer with Deferreds (fired on the loop's thread)."""

    def __init__(self, loop: Any, size: int) -> None:
        self.loop = loop
        self.threads = WorkerThreads(size, "kantoor-imap")

    def run(self, work: Callable[[], Any]) -> Deferred:
        """``work()`` in a pool thread; the Deferred fires on the loop's thread."""
        d: Deferred = Deferred()

        def reply(ok: bool, value: Any) -> None:
            if ok:
                d.callback(value)
            else:
                d.errback(Failure(value))
        if not self.threads.submit(self.loop, work, reply):
            # Stopping, and a session still calls: the loop's executor, as the pool's own fallback does.
            return Deferred.fromFuture(asyncio.ensure_future(asyncio.to_thread(work)))
        return d

    def stop(self) -> None:
        """Finish the queued tasks, then end the threads (blocks until they have)."""
        join(self.threads.begin_stop())


_pools: dict[int, DeferredThreads] = {}  # by id(reactor), in this process
_lock = threading.Lock()


def _forget_after_fork() -> None:
    _pools.clear()  # the threads did not survive the fork


os.register_at_fork(after_in_child=_forget_after_fork)


def worker_threads(reactor: Any, size: int) -> DeferredThreads | None:
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
            pool = _pools[id(reactor)] = DeferredThreads(loop, size)

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
