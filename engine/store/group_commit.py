"""Group commit: schedule writes that arrive while a durable commit runs share the next one.

Why: an acknowledged assignment must be on disk (fsync) before its answer, and an fsync costs far more
than the writes it covers. One writer thread takes every request queued meanwhile, runs them in one
transaction (each in its own savepoint, so one refused request leaves the others alone), commits once,
and only then answers each: N concurrent requests cost one fsync, and none is answered early.

Under load a group also waits a little for more (`_gather`): the senders a commit answered send their
next requests while the following commit runs, so without waiting the load in flight splits into two
groups that take turns, two fsyncs where one would do (an fsync costs ~1-1.5 ms of CPU here, several
times an item's own writes). So a group is gathered until it holds as many items as were waiting when
the last commit ended plus those that commit answered, or for at most as long as that commit took
(MAX_WAIT at most). A lone sender never waits: the last commit answered one, and its next is that one.
MAX_WAIT is 0 since session 11 (a group takes what is queued): with the node's cheaper commits (one sequencer
thread, lazily decoded worker messages) the wait cost more than the fsyncs it saved. bench_ingest, alternating
runs at load 0.9-1.5: 2 ingest workers, 8 connections 825-1,018 -> 1,040-1,320 items/s, 16 connections
1,131-1,634 -> 1,217-1,408 (median ~1,250 -> ~1,310); no workers 386-532 -> 441-652 (bench/README.md).
AONODE_GROUP_WAIT_MS=2 gives the old wait back.

With `sync` (SQLite in WAL mode with AONODE_SYNC_APART=1: commits without fsync, `sync` fsyncs the WAL), the
fsync runs apart: the writer commits a group and goes on with the next while a syncer thread fsyncs what
was committed so far, and only then answers those groups. So a group's writes overlap the previous
group's fsync (~1-5 ms of waiting for the disk here, several times the writes' CPU) instead of queuing
behind it, and one fsync covers every group committed while the one before it ran. Nothing is answered
before the fsync that follows its commit has returned.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from aonode.engine import metrics
from aonode.engine.errors import AONodeError

R = TypeVar("R")
MAX_GROUP = 256  # requests one commit covers at most
MAX_WAIT = 0.0  # seconds a group waits at most for the requests the last commit's answers bring (_gather; 0: none)


def max_wait() -> float:
    """MAX_WAIT, or AONODE_GROUP_WAIT_MS (0: a group takes only what is queued; 2: the wait before session 11)."""
    return float(os.environ.get("AONODE_GROUP_WAIT_MS", MAX_WAIT * 1000)) / 1000


@dataclass(frozen=True)
class Request(Generic[R]):
    """One queued write: `run` performs it inside the open transaction and returns its answer."""

    run: Callable[[], R]
    answer: Future[R]
    key: str = ""  # a group runs its requests in key order (stable): rows locked in one order
    size: int = 1  # the items it appends (how full a group is: _gather)


class GroupCommitter:
    """`submit(run)` returns `run()`'s answer once the transaction that ran it is committed.
    `transaction(steps)` (the store's) opens one transaction, runs each step inside a savepoint
    (rolled back to when the step raises, which is that request's answer), and commits durably."""

    def __init__(
        self,
        transaction: Callable[[Sequence[Callable[[], None]]], None],
        name: str,
        wait: float = MAX_WAIT,
        sync: Callable[[], None] | None = None,
    ) -> None:
        self._transaction = transaction
        self._wait = wait
        self.sync = sync  # makes what `transaction` committed durable (None: its commit already is)
        self._committed: queue.SimpleQueue[list[Outcome] | None] = queue.SimpleQueue()  # for the syncer
        self._sync_failed: AONodeError | None = None  # set for good by a failed sync (_sync_loop)
        self._syncer = threading.Thread(target=self._sync_loop, name=f"{name}-sync", daemon=True)
        if sync is not None:
            self._syncer.start()
        self._queue: queue.SimpleQueue[Request[object] | None] = queue.SimpleQueue()
        self._submitted = 0  # items handed over so far (under _closing)
        self._taken = 0  # items the writer took so far
        self._expect = 1  # items the next group waits for: waiting when the last commit ended + it answered
        self._took = 0.0  # seconds the last commit took: the longest a group waits
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._closed = False
        self._closing = threading.Lock()  # a request is queued before the stop mark or refused, never after it
        self._thread.start()

    def on_writer(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, run: Callable[[], R], key: str = "", size: int = 1) -> R:
        return self.submit_later(run, key, size).result()

    def submit_later(self, run: Callable[[], R], key: str = "", size: int = 1) -> Future[R]:
        """`submit` without waiting: the Future is settled once the transaction that ran `run` is
        committed (by the writer thread, which also runs the Future's callbacks). `size`: the items
        `run` appends (a hint for how long a group waits for more)."""
        answer: Future[R] = Future()
        with self._closing:
            if self._closed:
                raise AONodeError("store is closed")
            if self._sync_failed is not None:
                raise self._sync_failed
            self._submitted += size
            self._queue.put(Request(run, answer, key, size))  # type: ignore[arg-type]  # the queue holds any R
        return answer

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=30)
        if self.sync is not None:
            self._syncer.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._committed.put(None)
                return
            group, items, stop = self._gather(first)
            self._taken += items
            started = time.monotonic()
            self._commit(group)
            self._took = time.monotonic() - started
            # Those answered now send their next ones meanwhile: the next group waits for them too.
            self._expect = self._submitted - self._taken + items
            if stop:
                self._committed.put(None)
                return

    def _gather(self, first: Request[object]) -> tuple[list[Request[object]], int, bool]:
        """`first` and what is queued; then, while the group holds fewer items than expected, what
        comes within min(the last commit's time, wait) of `first` (the module's doc). Also the items
        the group appends, and True when the stop mark came (commit the group, then end)."""
        group, items = [first], first.size
        deadline = time.monotonic() + min(self._took, self._wait)
        while len(group) < MAX_GROUP:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if items >= self._expect or left <= 0:
                    break
                try:
                    more = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if more is None:
                return group, items, True
            group.append(more)
            items += more.size
        return group, items, False

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
        metrics.schedule_committed()
        missing = (None, AONodeError("the store did not run this request"))
        settled = [(request, *outcomes.get(index, missing)) for index, request in enumerate(group)]
        if self.sync is None:
            _settle(settled)
        else:
            self._committed.put(settled)

    def _sync_loop(self) -> None:
        """The syncer: every group committed so far made durable by one `sync`, then answered."""
        stop = False
        while not stop and (first := self._committed.get()) is not None:
            groups = [first]
            while not self._committed.empty():
                more = self._committed.get()
                if more is None:
                    stop = True
                    break
                groups.append(more)
            failed: BaseException | None = self._sync_failed
            if failed is None:
                try:
                    self.sync()  # type: ignore[misc]  # (started only with one)
                except BaseException as err:  # noqa: BLE001 - not known durable: that is each one's answer
                    failed = err
                    # For good (unless it never reached the disk): after a failed fsync the kernel may drop
                    # the pages it did not write and a later fsync succeed, and WAL recovery stops at the
                    # first lost frame, so nothing committed after it could be answered durable.
                    if not isinstance(err, SyncNotRun):
                        self._sync_failed = AONodeError(f"a sync of the store failed ({err!r}): restart the node")
            if failed is not None:
                for request, _, _ in (outcome for group in groups for outcome in group):
                    request.answer.set_exception(failed)
                continue
            for group in groups:
                _settle(group)


class SyncNotRun(AONodeError):
    """A `sync` that failed before it asked the disk anything (its file did not open: EMFILE, ...): the
    pages are still the kernel's to write, so the next sync is a new chance (any other failure is final)."""


Outcome = tuple[Request[object], object, "Exception | None"]  # a request, its value or its error


def _settle(outcomes: list[Outcome]) -> None:
    for request, value, error in outcomes:
        if error is not None:
            request.answer.set_exception(error)
        else:
            request.answer.set_result(value)


def group_committer(
    transaction: Callable[[Sequence[Callable[[], None]]], None], name: str, sync: Callable[[], None] | None = None
) -> GroupCommitter | None:
    """The store's GroupCommitter, or None with AONODE_GROUP_COMMIT=0 (one durable commit per call, to compare)."""
    if os.environ.get("AONODE_GROUP_COMMIT", "1") == "0":
        return None
    return GroupCommitter(transaction, name, max_wait(), sync)


def sync_apart() -> bool:
    """Whether a store that can fsync apart from its commits does: AONODE_SYNC_APART=1 (opt-in). The price: a
    row is visible to this node's reads from its commit on, ~1-5 ms before it is durable (its answer waits
    for the fsync; a read of the schedule in between may show a slot that a power loss then takes back)."""
    return os.environ.get("AONODE_SYNC_APART", "0") == "1"
