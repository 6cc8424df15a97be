"""Run a test's worker in several threads at once and bring back what they raised."""
from __future__ import annotations

import threading
from collections.abc import Callable


def in_threads(work: Callable[[int], object], count: int) -> list[BaseException]:
    """work(0) ... work(count - 1), each in its own thread, all started before any is joined; the
    exceptions they raised (a failed assert in a thread would otherwise be lost)."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as err:  # handed back to the test thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors
