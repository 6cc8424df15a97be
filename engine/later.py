"""Futures for work another thread finishes: chaining a step onto one, and one already settled.

Why: a schedule is answered when the group-commit writer's transaction is durable (store/group_commit.py).
A caller that must not wait on a thread of its own (the server's event loop) takes the Future instead,
and each layer (store, scheduler, router) adds its bookkeeping as a step run when the commit is done.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")


def then(first: Future[A], step: Callable[[A], B]) -> Future[B]:
    """A Future of `step(first's result)`, run in the thread that settles `first` (at once when it
    is already settled); an exception of `first` or of `step` settles it instead."""
    out: Future[B] = Future()

    def settle(done: Future[A]) -> None:
        try:
            out.set_result(step(done.result()))
        except BaseException as err:  # noqa: BLE001 - it is the answer of `out`
            out.set_exception(err)

    first.add_done_callback(settle)
    return out


def settled(run: Callable[[], A]) -> Future[A]:
    """`run()` now, in this thread, as a settled Future (its result or its exception)."""
    out: Future[A] = Future()
    try:
        out.set_result(run())
    except BaseException as err:  # noqa: BLE001 - it is the answer of `out`
        out.set_exception(err)
    return out
