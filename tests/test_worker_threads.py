"""The frontends' threads for blocking work (kantoor.worker_threads, the SMTP server's way): what
``asyncio.to_thread`` promised the handler — the result or the exception comes back to the awaiting task, a
call whose task was cancelled before it started never runs (a client that went away gets no delivery it was
not told about), and stopping lets the calls already queued finish (a reply is sent only after the commit)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kantoor.worker_threads import WorkerThreads


def test_results_and_exceptions_come_back_to_the_awaiting_task() -> None:
    async def main() -> None:
        threads = WorkerThreads(asyncio.get_running_loop(), 2, "test")
        loop_thread = threading.get_ident()
        assert await threads.run(lambda a, b: (a + b, threading.get_ident() != loop_thread), 2, 3) == (5, True)
        with pytest.raises(KeyError):
            await threads.run({}.__getitem__, "missing")
        # More calls than threads: the rest wait their turn, none is lost.
        assert await asyncio.gather(*(threads.run(pow, n, 2) for n in range(20))) == [n * n for n in range(20)]
        await threads.stop()

    asyncio.run(main())


def test_a_call_cancelled_before_it_starts_never_runs() -> None:
    async def main() -> None:
        threads = WorkerThreads(asyncio.get_running_loop(), 1, "test")
        release = threading.Event()
        ran: list[str] = []
        busy = threads.run(release.wait, 10)  # the only thread is busy until released
        later = threads.run(ran.append, "delivered")
        later.cancel()
        release.set()
        assert await busy is True
        assert await threads.run(ran.append, "next") is None
        assert ran == ["next"]
        await threads.stop()

    asyncio.run(main())


def test_stop_finishes_the_queued_calls_and_later_calls_still_run() -> None:
    async def main() -> None:
        threads = WorkerThreads(asyncio.get_running_loop(), 1, "test")
        release = threading.Event()
        done: list[int] = []
        first = threads.run(release.wait, 10)
        queued = [threads.run(done.append, n) for n in range(3)]
        stopping = asyncio.ensure_future(threads.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waits for the calls in hand
        release.set()
        await stopping
        assert await first is True and [await q for q in queued] == [None] * 3 and done == [0, 1, 2]
        # A session still busy while the server stops: its call runs in the loop's executor.
        assert await threads.run(sum, [1, 2]) == 3

    asyncio.run(main())
