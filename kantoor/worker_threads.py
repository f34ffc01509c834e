"""A light thread pool for the frontends' blocking work (Store calls, DNS checks), answering on the event loop.

Twisted's ThreadPool hands every task through a coordinator (its ``Team``: a lock worker, a
queue per worker, condition variables) and answers with ``callFromThread``, on the asyncio
reactor a ``callLater(0)``; ``asyncio.to_thread`` goes through the executor's work item and
two chained futures. Per IMAP APPEND that was ~0.12 ms of the worker's CPU and ~0.07 ms of the
loop's; per SMTP hop ~45 µs. Here a task is a lock and one ``SimpleQueue.put`` (C) to an idle
thread, and its outcome goes back with one ``call_soon_threadsafe``.

Threads start as needed up to ``size``. An idle thread waits on a queue of its own, and the one
that went idle last takes the next task (its stack and the database connection it just used are
warm; one busy session keeps being served by one thread). :meth:`WorkerThreads.stop` lets the
tasks already queued finish first — a reply is sent only after its commit — then ends the threads.

The IMAP server (Twisted Deferreds, :mod:`kantoor.imapd.worker_threads`), the SMTP server
(asyncio futures, :meth:`WorkerThreads.run`) and the drive's plain reads
(:mod:`kantoor.davserver.files.direct_read`, a one-thread pool for jobs that never wait for
a client) each have a pool of this kind.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

log = logging.getLogger("kantoor.threads")

T = TypeVar("T")
# (the loop that gets the outcome, work, reply(ok, value) run on that loop, whether it is no longer wanted);
# None ends a thread.
_Reply = Callable[[bool, Any], None]
_Task = tuple[asyncio.AbstractEventLoop, Callable[[], Any], _Reply, Callable[[], bool] | None] | None


class WorkerThreads:
    """Up to ``size`` threads, started as needed, each task answering on the loop it names."""

    def __init__(self, size: int, name: str) -> None:
        self._size = max(1, size)
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[SimpleQueue[_Task]] = []  # a stack: the last to go idle is woken first
        self._backlog: deque[_Task] = deque()  # tasks waiting for a thread when all are busy
        self._threads: list[threading.Thread] = []
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def submit(self, loop: asyncio.AbstractEventLoop, work: Callable[[], Any], reply: Callable[[bool, Any], None],
               unwanted: Callable[[], bool] | None = None) -> bool:
        """Run ``work()`` in a thread, then ``reply(True, result)`` or ``reply(False, exception)`` on ``loop``;
        skipped if ``unwanted()`` says so when a thread gets to it. False (nothing done) once stopping."""
        task: _Task = (loop, work, reply, unwanted)
        with self._lock:
            if self._stopping:
                return False
            if self._idle:
                self._idle.pop().put(task)
                return True
            self._backlog.append(task)
            if len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return True

    def run(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``func(*args)`` in a thread, in a copy of the caller's context (as ``asyncio.to_thread``), as a future
        of the running loop; a cancelled one's call is skipped if not begun. Once stopping (a session still busy
        while the server stops), on the loop's executor, as before."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        context = contextvars.copy_context()
        if not self.submit(loop, lambda: context.run(func, *args), lambda ok, value: _settle(future, ok, value),
                           future.cancelled):
            return asyncio.ensure_future(asyncio.to_thread(func, *args))
        return future

    def begin_stop(self) -> list[threading.Thread]:
        """Take no more tasks; the threads end once the queued ones are done (join the returned threads)."""
        with self._lock:
            self._stopping = True
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for inbox in idle:
            inbox.put(None)
        return [thread for thread in threads if thread is not threading.current_thread()]

    async def stop(self) -> None:
        """:meth:`begin_stop`, and wait for the threads (in the loop's executor: joining blocks)."""
        threads = self.begin_stop()
        if threads:
            await asyncio.to_thread(join, threads)

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
            loop, work, reply, unwanted = task
            del task
            if unwanted is not None and unwanted():  # read without the loop's lock: at worst the work runs
                continue
            try:
                outcome: tuple[bool, Any] = (True, work())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits, as to_thread does
                outcome = (False, exc)
            try:
                loop.call_soon_threadsafe(reply, *outcome)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                log.warning("%s: a task finished after the event loop closed", self._name)
            del loop, work, reply, unwanted, outcome  # nothing of a finished task stays alive in an idle thread


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return  # cancelled meanwhile
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


__all__ = ["WorkerThreads", "join"]
