"""Run a test's work in threads and bring back what they raised.

An exception in a plain threading.Thread (a failed assert, an unexpected status) only reaches pytest
as an "unhandled thread exception" warning: the test goes on and passes. Threads here keep it, and
`join` raises it again in the test thread, so the test fails with the thread's own traceback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Threads(Generic[T]):
    """work(0) ... work(count - 1), each in its own (daemon) thread once started; `join` waits for all,
    fails if one is still running, raises what a thread raised, else returns their results in order."""

    def __init__(self, work: Callable[[int], T], count: int = 1, name: str = "test-thread") -> None:
        self.errors: list[BaseException] = []
        self.results: dict[int, T] = {}
        self.threads = [
            threading.Thread(target=self._run, args=(work, n), name=f"{name}-{n}", daemon=True) for n in range(count)
        ]

    def _run(self, work: Callable[[int], T], n: int) -> None:
        try:
            self.results[n] = work(n)
        except BaseException as err:  # handed back to the test thread by join
            self.errors.append(err)

    def start(self) -> Threads[T]:
        for thread in self.threads:
            thread.start()
        return self

    def is_alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def until(self, event: threading.Event, timeout: float) -> bool:
        """Wait up to `timeout` for `event` while the threads run: False if they all ended without it,
        and what one raised at once (not after the whole timeout)."""
        deadline = time.monotonic() + timeout
        while not event.wait(0.05):
            if self.errors:
                raise self.errors[0]
            if not self.is_alive() or time.monotonic() > deadline:
                return event.is_set()
        return True

    def join(self, timeout: float | None = None, running: str = "still running") -> list[T]:
        """`running`: what it means that a thread has not ended in time (the failure's message)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self.errors:
            if len(self.errors) > 1:
                self.errors[0].add_note(f"({len(self.errors) - 1} more of {len(self.threads)} threads failed too)")
            raise self.errors[0]
        late = [thread.name for thread in self.threads if thread.is_alive()]
        if late:
            raise AssertionError(f"{running} (after {timeout} s: {', '.join(late)})")
        return [self.results[n] for n in range(len(self.threads))]


def started(work: Callable[[], T], name: str = "test-thread") -> Threads[T]:
    """One thread running work(), already started; `.join(timeout)[0]` is what it returned."""
    return Threads(lambda _n: work(), 1, name).start()


def in_threads(work: Callable[[int], object], count: int) -> list[BaseException]:
    """work(0) ... work(count - 1), each in its own thread, all started before any is joined; the
    exceptions they raised (a failed assert in a thread would otherwise be lost)."""
    threads = Threads(work, count).start()
    for thread in threads.threads:
        thread.join()
    return threads.errors
