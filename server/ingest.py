"""Signed messages onto schedules without a worker thread asleep on each commit.

A schedule request's message is checked (parse + signature: CPU, the RSA part without the GIL) on
one of a few checker threads, handed to the store's group-commit writer without waiting
(`NodeAPI.schedule_later`), and its answer reaches the event loop once the commit that holds it is
durable, as before: nothing is answered early. Why not the quick pool: there a worker thread per
request slept until its commit and woke to hand the answer on, four thread handoffs per item that
cost more CPU than the check itself (bench/bench_ingest_app.py). Here, under load, each thread finds
its next job already queued, and the answers of one commit wake the event loop once.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from aonode.engine import metrics
from aonode.engine.answers import AssignmentJSON
from aonode.engine.errors import Busy
from aonode.engine.message import Message
from aonode.server.api import NodeAPI

CHECKERS = 2  # threads checking messages: the RSA check runs beside the event loop on a second core
IDLE_SECONDS = 5.0  # a checker with nothing to do for this long ends (a new one starts with the next job)
Work = Callable[[], tuple[str, Message]]  # the request's (process id, checked message), or an error
Outcome = Future[AssignmentJSON] | BaseException
Job = tuple[Work, "asyncio.Future[AssignmentJSON]"]


class Ingest:
    """`await schedule(work)`: `work()` on a checker thread, then the message scheduled; the answer
    once durable. Bounded like a pool: past `limit` jobs in flight, Busy at once."""

    def __init__(self, node: NodeAPI, limit: int, checkers: int = CHECKERS, idle_seconds: float = IDLE_SECONDS) -> None:
        self.node = node
        self.limit = limit
        self.checkers = checkers
        self.idle_seconds = idle_seconds
        self.pending = 0  # jobs not yet answered (the event loop's count; in_flight() reads it)
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live = 0  # checker threads running
        self._idle = 0  # of those, waiting for a job
        self._ready: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[AssignmentJSON], Outcome]]] = {}

    @property
    def checkers_running(self) -> int:
        return self._live

    async def schedule(self, work: Work) -> AssignmentJSON:
        if self.pending >= self.limit:
            raise Busy(f"the ingest queue is full ({self.pending} waiting); retry later")
        answer: asyncio.Future[AssignmentJSON] = asyncio.get_running_loop().create_future()
        self.pending += 1
        metrics.pool_depth("ingest", self.pending)
        self._jobs.put((work, answer))
        with self._lock:
            start = self._idle == 0 and self._live < self.checkers
            self._live += start
        if start:
            threading.Thread(target=self._check, name="aonode-ingest", daemon=True).start()
        return await answer  # a dropped request's job still runs; its answer is then dropped

    def _check(self) -> None:
        """A checker thread: check, hand to the writer, on to the next job."""
        while True:
            with self._lock:
                self._idle += 1
            try:
                work, answer = self._jobs.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._jobs.empty():
                        self._live -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
            try:
                pid, msg = work()
                committed = self.node.schedule_later(pid, msg)
            except BaseException as err:  # noqa: BLE001 - the request's answer (a 4xx, mostly)
                self._deliver(answer, err)
            else:
                committed.add_done_callback(lambda done, answer=answer: self._deliver(answer, done))  # type: ignore[misc]

    def _deliver(self, answer: asyncio.Future[AssignmentJSON], outcome: Outcome) -> None:
        """From any thread: queue the outcome for the answer's event loop, waking it once per batch."""
        loop = answer.get_loop()
        with self._lock:
            batch = self._ready.setdefault(loop, [])
            batch.append((answer, outcome))
            if len(batch) > 1:
                return  # a wake-up is already on its way
        try:
            loop.call_soon_threadsafe(self._settle, loop)
        except RuntimeError:  # the loop is closed: nobody waits for these any more
            with self._lock:
                self._ready.pop(loop, None)

    def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the event loop: settle every answer ready for it."""
        with self._lock:
            batch = self._ready.pop(loop, [])
        self.pending -= len(batch)
        metrics.pool_depth("ingest", self.pending)
        for answer, outcome in batch:
            if answer.cancelled():
                continue
            if isinstance(outcome, BaseException):
                answer.set_exception(outcome)
            elif outcome.exception() is not None:
                answer.set_exception(outcome.exception())  # type: ignore[arg-type]
            else:
                answer.set_result(outcome.result())
