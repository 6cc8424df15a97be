"""frozen_heap: the objects older than a backlog are left alone while it runs and collected after."""

from __future__ import annotations

import gc
import threading
import weakref

from aonode.engine.frozen_heap import frozen_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_a_cycle_older_than_the_block_is_collected_after_it_not_during() -> None:
    gc.collect()
    old = cycle()
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        gc.collect()
        assert old() is not None  # frozen: not walked
        young = cycle()
        gc.collect()
        assert young() is None  # made inside the block: collected as usual
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert old() is None  # back in the oldest generation: not lost


def test_overlapping_blocks_share_one_freeze_until_the_last_ends() -> None:
    inside, leave = threading.Event(), threading.Event()

    def other_backlog() -> None:
        with frozen_heap():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other_backlog)
    with frozen_heap():
        thread.start()
        assert inside.wait(10)
    assert gc.get_freeze_count() > 0  # the other block still runs
    leave.set()
    thread.join()
    assert gc.get_freeze_count() == 0
