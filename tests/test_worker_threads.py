"""The frontends' threads for blocking work (kantoor.worker_threads, the SMTP server's way): what
``asyncio.to_thread`` promised the handler — the result or the exception comes back to the awaiting task, a
call whose task was cancelled before it started never runs (a client that went away gets no delivery it was
not told about), and stopping lets the calls already queued finish (a reply is sent only after the commit)."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from kantoor.worker_threads import WorkerThreads


def test_results_and_exceptions_come_back_to_the_awaiting_task() -> None:
    async def main() -> None:
        threads = WorkerThreads(2, "test")
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
        threads = WorkerThreads(1, "test")
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
        threads = WorkerThreads(1, "test")
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


def test_one_thread_runs_calls_in_order_in_the_callers_context_off_the_loop() -> None:
    """A pool of one (the drive's plain reads): calls run one after the other in the order given, each in a copy
    of the caller's context (as ``asyncio.to_thread``), never on the event loop's thread; an exception reaches
    its own caller only."""
    request = contextvars.ContextVar("request", default="none")
    threads = WorkerThreads(1, "test-order")
    ran: list[tuple[int, str, str]] = []

    def job(number: int) -> int:
        ran.append((number, threading.current_thread().name, request.get()))
        if number == 3:
            raise ValueError("job 3 fails")
        return number * 10

    async def main() -> list[object]:
        request.set("GET /a")
        futures = [threads.run(job, number) for number in range(5)]
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 20)
        await threads.stop()
        return results

    results = asyncio.run(main())
    assert results[:3] == [0, 10, 20] and results[4] == 40
    assert isinstance(results[3], ValueError)
    assert [number for number, _, _ in ran] == [0, 1, 2, 3, 4]
    assert {name for _, name, _ in ran} == {"test-order-0"}
    assert {context for _, _, context in ran} == {"GET /a"}
