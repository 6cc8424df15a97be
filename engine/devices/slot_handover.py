"""The wasm-ahead worker's begun slots on their way to the compute thread, handed over a few at a time.

Why: with one wake-up per slot (a queue the compute thread blocks on), every slot cost the worker,
whose wasm calls set the backlog's pace, a futex wake of the other core (an inter-processor interrupt:
a VM exit on this KVM machine), and the compute thread, woken while the worker was between two wasm
calls, took the GIL from it right then. Here the compute thread, once it has finished every slot
handed over, sleeps until `wake_every` more are ready or the worker is about to wait for input or
ends (`ready`); then it finishes them in a row while the worker runs the next wasm calls. Once no
more slots are to come (`hurry`), each is handed over as it is begun: the end of a backlog, where
nothing overlaps, is not held back by a batch. The slots
and their order are the same whatever `wake_every` is: it changes when the compute thread wakes, not
what it is given.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handover(Generic[T]):
    """Items from one producer thread to one consumer thread, in order; the consumer waiting for
    them is woken once `wake_every` are there, or at the producer's `ready`."""

    def __init__(self, wake_every: int) -> None:
        if wake_every < 1:
            raise ValueError("wake_every must be at least 1")
        self.wake_every = wake_every
        self.wakes = 0  # times the consumer was woken (tests and bench count them)
        self._items: deque[T] = deque()
        self._lock = threading.Lock()  # guards `_items` and `_waiting` together
        self._waiting = False  # the consumer sleeps on `_bell`
        self._bell = threading.Lock()
        self._bell.acquire()  # released once per wait, to wake the consumer

    def put(self, item: T) -> None:
        """The producer hands over `item` (the consumer is woken once `wake_every` wait)."""
        with self._lock:
            self._items.append(item)
            if self._waiting and len(self._items) >= self.wake_every:
                self._ring()

    def ready(self) -> None:
        """The producer is about to wait (or ends): the consumer gets what is there now."""
        with self._lock:
            if self._waiting and self._items:
                self._ring()

    def hurry(self) -> None:
        """From now on every item wakes the consumer (the producer's last few: the consumer's work
        on them no longer overlaps the producer's, so a batch would only make the end later)."""
        with self._lock:
            self.wake_every = 1
            if self._waiting and self._items:
                self._ring()

    def get(self) -> T:
        """The next item, waiting for it if none is there (only ask for an item the producer will
        put or has put: a wait ends at `wake_every` items or the producer's `ready`)."""
        with self._lock:
            if self._items:
                return self._items.popleft()
            self._waiting = True
        self._bell.acquire()
        with self._lock:
            return self._items.popleft()

    def drain(self) -> list[T]:
        """What is there and nobody took (the producer has ended)."""
        with self._lock:
            left = list(self._items)
            self._items.clear()
        return left

    def _ring(self) -> None:
        self._waiting = False
        self.wakes += 1
        self._bell.release()
