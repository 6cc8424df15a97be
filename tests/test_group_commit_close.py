"""Closing a store while schedules are still being handed to its group-commit writer: every one
handed over is either committed or refused ("store is closed"), none left waiting forever (a
request queued behind the writer's stop mark was never answered: its HTTP answer, a `/push`
worker or a shutdown waiting on it hung)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, wait

import pytest

from aonode.engine.errors import AONodeError
from aonode.engine.store import open_store
from aonode.engine.store.base import Assignment
from tests.helpers.threads import Threads

SUBMITTERS = 4


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads switch as often as they can, so a submit lands between the closed check and the queue."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _nothing(view: object) -> tuple[list[Assignment], int]:
    return [], 1


@pytest.mark.parametrize("trial", range(3))
def test_every_schedule_handed_over_during_close_is_answered(store_spec: str, fast_switching: None, trial: int) -> None:
    store = open_store(store_spec)
    handed: list[Future[int]] = []

    def submit() -> None:
        while True:
            try:
                handed.append(store.sequence_later("P" * 43, _nothing))
            except AONodeError:  # closed: refused at once
                return

    submitters = Threads(lambda _n: submit(), SUBMITTERS, "submitter").start()
    time.sleep(0.02)
    store.close()
    submitters.join(30)  # raises what a submitter raised other than the refusal
    _, waiting = wait(handed, timeout=10)
    assert not waiting, f"{len(waiting)} of {len(handed)} schedules never answered"
    for future in handed:
        error = future.exception()
        assert error is None or "closed" in str(error)
