"""kantoor.imapd.worker_threads: APPEND's Store work off the reactor thread, answered on it, in order."""

from __future__ import annotations

import asyncio
import threading
import time

from kantoor.imapd.worker_threads import DeferredThreads


def test_results_and_errors_come_back_on_the_loop_thread() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = DeferredThreads(loop, 4)
        seen: list[tuple[str, object, bool]] = []
        done = asyncio.Event()
        loop_thread = threading.current_thread()

        def record(kind: str):  # type: ignore[no-untyped-def]
            def callback(value: object) -> None:
                seen.append((kind, value, threading.current_thread() is loop_thread))
                if len(seen) == 3:
                    done.set()
            return callback

        def fail() -> None:
            raise ValueError("refused")

        pool.run(lambda: threading.current_thread().name).addCallback(record("ok"))
        pool.run(lambda: 6 * 7).addCallback(record("ok"))
        pool.run(fail).addErrback(lambda failure: record("error")(failure.value))
        await asyncio.wait_for(done.wait(), 10)
        pool.stop()
        assert all(on_loop for _kind, _value, on_loop in seen)
        assert ("ok", 42, True) in seen
        assert any(kind == "error" and isinstance(value, ValueError) for kind, value, _ in seen)
        assert any(kind == "ok" and str(value).startswith("kantoor-imap-") for kind, value, _ in seen)

    asyncio.run(main())


def test_stopping_finishes_the_tasks_already_queued() -> None:
    """Like Twisted's pool at reactor shutdown: a command whose work started still commits and answers."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pool = DeferredThreads(loop, 2)
        finished: list[int] = []

        def slow(n: int) -> int:
            time.sleep(0.05)
            finished.append(n)
            return n

        for n in range(6):
            pool.run(lambda n=n: slow(n))
        await loop.run_in_executor(None, pool.stop)
        assert sorted(finished) == list(range(6))
        assert len(pool.threads._threads) == 2  # never more threads than the pool's size

    asyncio.run(main())
