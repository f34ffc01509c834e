"""The SMTP server's threads for its blocking work (Store calls, the MX checks): :meth:`WorkerThreads.run`.

``asyncio.to_thread`` copies the context, hands the call to the loop's executor (a work item, a
concurrent future, the executor's lock and thread accounting) and brings the result back through a
second future chained to the first (callbacks on both sides, a lock round trip): ~45 µs of CPU per
call, and an inbound message makes two (RCPT, DATA). Here a call is one ``SimpleQueue.put`` (C) to
an idle thread, and its result goes back with one ``call_soon_threadsafe``: about half the CPU.
The thread that went idle last takes the next call (its stack and the database connection it
just used are warm).

Nothing in the SMTP server reads context variables, so the call runs without a copy of the
caller's context. A call whose awaiting task was cancelled before the call started (the client
went away) is dropped, as ``to_thread``'s is; a started one finishes and its result is dropped.
:meth:`WorkerThreads.stop` lets the calls already queued finish (a reply is sent only after the
commit), then ends the threads; a call made after that goes to the loop's executor.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

log = logging.getLogger("kantoor.smtpd")

T = TypeVar("T")
_Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"] | None  # None ends a thread


class WorkerThreads:
    """Up to ``size`` threads, started as needed; an idle one waits on a queue of its own."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, name: str = "kantoor-smtp") -> None:
        self._loop = loop
        self._size = max(1, size)
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[SimpleQueue[_Call]] = []  # a stack: the last to go idle is woken first
        self._backlog: deque[_Call] = deque()  # calls waiting for a thread when all are busy
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def run(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``func(*args)`` in one of the threads; the future is settled on the loop's thread."""
        future: asyncio.Future[T] = self._loop.create_future()
        call: _Call = (func, args, future)
        with self._lock:
            if self._stopping:  # a session still busy while the server stops: the loop's executor, as before
                return asyncio.ensure_future(asyncio.to_thread(func, *args))
            if self._idle:
                self._idle.pop().put(call)
                return future
            self._backlog.append(call)
            if len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    async def stop(self) -> None:
        """Finish the calls already queued, then end the threads (waited for in a thread of the loop's
        executor: joining blocks)."""
        with self._lock:
            self._stopping = True
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for inbox in idle:
            inbox.put(None)
        if threads:
            await asyncio.to_thread(_join, threads)

    def _next(self, inbox: SimpleQueue[_Call]) -> _Call:
        with self._lock:
            if self._backlog:
                return self._backlog.popleft()
            if self._stopping:
                return None
            self._idle.append(inbox)
        return inbox.get()

    def _work(self) -> None:
        inbox: SimpleQueue[_Call] = SimpleQueue()
        loop = self._loop
        while (call := self._next(inbox)) is not None:
            func, args, future = call
            del call
            if future.cancelled():  # its task is gone (read without the loop's lock: at worst the call runs)
                continue
            try:
                result = func(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, as to_thread does
                settle: tuple[Any, ...] = (future, None, exc)
            else:
                settle = (future, result, None)
            try:
                loop.call_soon_threadsafe(_settle, *settle)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                log.warning("SMTP task finished after the event loop closed")
            del func, args, future, settle  # nothing of a finished call stays alive in an idle thread
            result = None


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return  # cancelled meanwhile
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
