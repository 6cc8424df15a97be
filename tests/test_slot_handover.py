"""The worker's begun slots reach the compute thread in order, a few per wake-up (engine/devices/
slot_handover.py): a waiting consumer sleeps until `wake_every` items are there or the producer says it
is about to wait (`ready`), never longer; every item put is got exactly once."""

from __future__ import annotations

import random
import threading
import time

import pytest

from aonode.engine.devices.slot_handover import Handover

GRACE = 0.2  # seconds a consumer that should stay asleep is given to (wrongly) wake


class Consumer:
    """A thread taking `count` items from `handover`, one `get` at a time."""

    def __init__(self, handover: Handover[int], count: int) -> None:
        self.got: list[int] = []
        self.thread = threading.Thread(target=self._run, args=(handover, count), daemon=True)
        self.thread.start()

    def _run(self, handover: Handover[int], count: int) -> None:
        for _ in range(count):
            self.got.append(handover.get())

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.got) < count and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(self.got) == count, self.got


def test_a_waiting_consumer_is_woken_once_wake_every_items_are_there() -> None:
    handover: Handover[int] = Handover(wake_every=4)
    consumer = Consumer(handover, 8)
    for item in range(3):
        handover.put(item)
    time.sleep(GRACE)
    assert consumer.got == []  # three ready, the consumer sleeps on
    handover.put(3)
    consumer.wait_for(4)  # the fourth wakes it: it takes all four in a row
    assert consumer.got == [0, 1, 2, 3] and handover.wakes == 1
    for item in range(4, 8):
        handover.put(item)
    consumer.thread.join(10)
    assert consumer.got == list(range(8)) and handover.wakes == 2


def test_ready_wakes_the_consumer_with_fewer_items() -> None:
    handover: Handover[int] = Handover(wake_every=4)
    consumer = Consumer(handover, 2)
    handover.put(0)
    handover.put(1)
    time.sleep(GRACE)
    assert consumer.got == []
    handover.ready()  # the producer is about to wait for input: what is there goes now
    consumer.thread.join(10)
    assert consumer.got == [0, 1] and handover.wakes == 1


def test_ready_with_nothing_there_wakes_nobody_and_loses_no_item() -> None:
    handover: Handover[int] = Handover(wake_every=2)
    consumer = Consumer(handover, 1)
    time.sleep(GRACE / 2)
    handover.ready()  # nothing to hand over: the consumer must not wake to an empty handover
    time.sleep(GRACE / 2)
    assert consumer.thread.is_alive() and handover.wakes == 0
    handover.put(0)
    handover.ready()
    consumer.thread.join(10)
    assert consumer.got == [0]


def test_items_already_there_are_got_without_a_wait() -> None:
    handover: Handover[int] = Handover(wake_every=8)
    for item in range(3):
        handover.put(item)
    assert [handover.get() for _ in range(3)] == [0, 1, 2] and handover.wakes == 0
    handover.put(3)
    assert handover.drain() == [3] and handover.drain() == []


@pytest.mark.parametrize("wake_every", [1, 3, 8])
def test_a_racing_producer_hands_over_everything_in_order(wake_every: int) -> None:
    """As the wasm-ahead worker does: `ready` whenever it would wait for its next input, and at its end;
    the consumer asks only for items the producer will put. Random pauses on both sides."""
    count, rng = 2_000, random.Random(wake_every)
    pauses = [rng.random() < 0.02 for _ in range(count)]
    handover: Handover[int] = Handover(wake_every)

    def produce() -> None:
        try:
            for item in range(count):
                if pauses[item]:
                    handover.ready()
                    time.sleep(0.0005)
                handover.put(item)
        finally:
            handover.ready()

    consumer = Consumer(handover, count)
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(30)
    consumer.thread.join(30)
    assert not consumer.thread.is_alive(), f"consumer stuck after {len(consumer.got)} items"
    assert consumer.got == list(range(count))
    assert handover.wakes <= count // wake_every + sum(pauses) + 1


def test_wake_every_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Handover(wake_every=0)


def test_after_hurry_every_item_wakes_the_consumer() -> None:
    """The producer's last items (no more inputs to come): each goes over as it is put."""
    handover: Handover[int] = Handover(wake_every=4)
    consumer = Consumer(handover, 3)
    handover.put(0)
    time.sleep(GRACE)
    assert consumer.got == []
    handover.hurry()  # one item there and the consumer waiting: it goes now
    consumer.wait_for(1)
    handover.put(1)
    consumer.wait_for(2)  # alone, though wake_every is 4
    handover.put(2)
    consumer.thread.join(10)
    assert consumer.got == [0, 1, 2]
