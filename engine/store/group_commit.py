"""Group commit: schedule writes that arrive while a durable commit runs share the next one.

Why: an acknowledged assignment must be on disk (fsync) before its answer, and an fsync costs far more
than the writes it covers. One writer thread takes every request queued meanwhile, runs them in one
transaction (each in its own savepoint, so one refused request leaves the others alone), commits once,
and only then answers each: N concurrent requests cost one fsync, and none is answered early.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from aonode.engine.errors import AONodeError

R = TypeVar("R")
MAX_GROUP = 256  # requests one commit covers at most


@dataclass(frozen=True)
class Request(Generic[R]):
    """One queued write: `run` performs it inside the open transaction and returns its answer."""

    run: Callable[[], R]
    answer: Future[R]
    key: str = ""  # a group runs its requests in key order (stable): rows locked in one order


class GroupCommitter:
    """`submit(run)` returns `run()`'s answer once the transaction that ran it is committed.
    `transaction(steps)` (the store's) opens one transaction, runs each step inside a savepoint
    (rolled back to when the step raises, which is that request's answer), and commits durably."""

    def __init__(self, transaction: Callable[[Sequence[Callable[[], None]]], None], name: str) -> None:
        self._transaction = transaction
        self._queue: queue.SimpleQueue[Request[object] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._closed = False
        self._closing = threading.Lock()  # a request is queued before the stop mark or refused, never after it
        self._thread.start()

    def on_writer(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, run: Callable[[], R], key: str = "") -> R:
        return self.submit_later(run, key).result()

    def submit_later(self, run: Callable[[], R], key: str = "") -> Future[R]:
        """`submit` without waiting: the Future is settled once the transaction that ran `run` is
        committed (by the writer thread, which also runs the Future's callbacks)."""
        answer: Future[R] = Future()
        with self._closing:
            if self._closed:
                raise AONodeError("store is closed")
            self._queue.put(Request(run, answer, key))  # type: ignore[arg-type]  # the queue holds any R
        return answer

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._commit(group)
                    return
                group.append(more)
            self._commit(group)

    def _commit(self, group: list[Request[object]]) -> None:
        group = sorted(group, key=lambda r: r.key)  # one process's requests keep their arrival order
        outcomes: dict[int, tuple[object, Exception | None]] = {}

        def step(index: int, request: Request[object]) -> Callable[[], None]:
            def run() -> None:
                try:
                    outcomes[index] = (request.run(), None)
                except Exception as err:
                    outcomes[index] = (None, err)
                    raise

            return run

        try:
            self._transaction([step(i, r) for i, r in enumerate(group)])
        except BaseException as err:  # noqa: BLE001 - the commit failed: nothing of the group is durable
            for request in group:
                request.answer.set_exception(err)
            return
        for index, request in enumerate(group):
            value, error = outcomes.get(index, (None, AONodeError("the store did not run this request")))
            if error is not None:
                request.answer.set_exception(error)
            else:
                request.answer.set_result(value)


def group_committer(transaction: Callable[[Sequence[Callable[[], None]]], None], name: str) -> GroupCommitter | None:
    """The store's GroupCommitter, or None with AONODE_GROUP_COMMIT=0 (one durable commit per call, to compare)."""
    return GroupCommitter(transaction, name) if os.environ.get("AONODE_GROUP_COMMIT", "1") != "0" else None
