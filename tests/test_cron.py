"""cron@1.0: frequency parsing, tick arithmetic, and cron messages landing in the schedule."""
from __future__ import annotations

from pathlib import Path

import pytest

from aonode.engine.crypto import Wallet
from aonode.engine.devices.cron import Frequency, cron_message, due_ticks, parse_frequency
from aonode.engine.devices.scheduler import Scheduler, verify_chain
from aonode.engine.errors import BadInput
from aonode.engine.message import Message
from aonode.engine.store import SQLiteStore

MIN = 60_000
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def owner() -> str:
    return Wallet.generate("ed25519").address


@pytest.mark.parametrize("text, expected", [
    ("10-Minutes", Frequency(10 * MIN)),
    ("1-second", Frequency(1000)),
    ("500-Milliseconds", Frequency(500)),
    ("2-Hours", Frequency(2 * 3_600_000)),
    ("1-Day", Frequency(86_400_000)),
    ("5-Blocks", Frequency(5, by_blocks=True)),
    ("1-block", Frequency(1, by_blocks=True)),
    (" 3 - minutes ", Frequency(3 * MIN)),
])
def test_parse_frequency(text, expected):
    assert parse_frequency(text) == expected


@pytest.mark.parametrize("text", ["", "Minutes", "10", "10-", "-10-Minutes", "0-Minutes",
                                  "10-Fortnights", "ten-Minutes", "10-Minutes-ago", "1.5-Hours"])
def test_parse_frequency_rejects_garbage(text):
    with pytest.raises(BadInput, match="Cron-Frequency"):
        parse_frequency(text)


def test_parse_frequency_rejects_non_strings():
    with pytest.raises(BadInput):
        parse_frequency(10)


def test_due_ticks_are_boundaries_in_half_open_range():
    f = "10-Minutes"
    assert due_ticks(f, T0, T0 + 25 * MIN, T0) == [T0 + 10 * MIN, T0 + 20 * MIN]
    # `last` excluded, `now` included
    assert due_ticks(f, T0 + 10 * MIN, T0 + 20 * MIN, T0) == [T0 + 20 * MIN]
    assert due_ticks(f, T0 + 10 * MIN, T0 + 20 * MIN - 1, T0) == []
    # the boundary grid is anchored at the origin, not at `last`
    assert due_ticks(f, T0 + 7 * MIN, T0 + 31 * MIN, T0 + 1) == [T0 + 1 + 10 * MIN,
                                                                T0 + 1 + 20 * MIN,
                                                                T0 + 1 + 30 * MIN]
    assert due_ticks(f, T0, T0, T0) == [] and due_ticks(f, T0 + MIN, T0, T0) == []
    assert due_ticks("5-Blocks", 100, 112, 100) == [105, 110]
    # splitting a range never loses or repeats a tick
    whole = due_ticks("1-second", T0, T0 + 10_000, T0 - 300)
    split = [t for a, b in [(T0, T0 + 3_700), (T0 + 3_700, T0 + 10_000)]
             for t in due_ticks("1-second", a, b, T0 - 300)]
    assert whole == split and len(whole) == 10


def test_cron_messages_are_deterministic(owner: str):
    definition = Message.create(owner=owner, tags=[("Cron-Frequency", "1-Minute"),
                                                   ("Cron-Tag-Action", "Tick"),
                                                   ("Cron-Tag-Kind", "heartbeat")])
    a, b = cron_message(definition.id, definition, T0), cron_message(definition.id, definition, T0)
    assert a == b and a.id != cron_message(definition.id, definition, T0 + 1).id
    assert a.owner == a.from_ == a.target == definition.id
    assert a.tag("Action") == "Tick" and a.tag("Kind") == "heartbeat"
    assert a.tag("Type") == "Message" and a.tag("Cron-Tick") == str(T0)


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def run_schedule(tmp: Path, owner: str, times: list[int], freq: str = "10-Minutes"):
    """Spawn at T0 and send one message at each time; return the whole schedule."""
    store = SQLiteStore(tmp)
    clock = Clock(T0)
    sched = Scheduler(store, clock=clock)
    proc = Message.create(owner=owner, tags=[("Type", "Process"), ("Cron-Frequency", freq)])
    sched.spawn(proc.id, proc)
    for n, t in enumerate(times):
        clock.now = t
        sched.schedule(proc.id, Message.create(owner=owner, target=proc.id, data=f"m{n}"))
    out = store.assignments(proc.id)
    store.close()
    return out


def describe(assignments) -> list[tuple]:
    return [(a.slot, a.timestamp, a.message.tag("Action") or a.message.data) for a in assignments]


def test_cron_messages_are_in_the_schedule(tmp_path: Path, owner: str):
    sched = run_schedule(tmp_path, owner, [T0 + 5 * MIN, T0 + 25 * MIN, T0 + 26 * MIN])
    assert describe(sched) == [
        (0, T0, ""),
        (1, T0 + 5 * MIN, "m0"),
        (2, T0 + 10 * MIN, "Cron"),
        (3, T0 + 20 * MIN, "Cron"),
        (4, T0 + 25 * MIN, "m1"),
        (5, T0 + 26 * MIN, "m2"),
    ]
    assert sched[2].message.tag("Cron-Tick") == str(T0 + 10 * MIN)
    assert verify_chain(sched)


def test_replay_gives_the_same_slots(tmp_path: Path, owner: str):
    times = [T0 + 3 * MIN, T0 + 47 * MIN, T0 + 48 * MIN, T0 + 95 * MIN]
    first = run_schedule(tmp_path / "a", owner, times)
    second = run_schedule(tmp_path / "b", owner, times)
    assert first == second
    assert sum(a.message.tag("Action") == "Cron" for a in first) == 9


def test_tick_appends_due_cron_without_a_message(tmp_path: Path, owner: str):
    store = SQLiteStore(tmp_path)
    clock = Clock(T0)
    sched = Scheduler(store, clock=clock)
    proc = Message.create(owner=owner, tags=[("Type", "Process"), ("Cron-Frequency", "1-Hour")])
    sched.spawn(proc.id, proc)
    clock.now = T0 + 150 * MIN
    added = sched.tick(proc.id)
    assert [(a.slot, a.timestamp) for a in added] == [(1, T0 + 60 * MIN), (2, T0 + 120 * MIN)]
    assert sched.tick(proc.id) == []  # nothing new is due
    store.close()


def test_block_frequency_uses_block_heights(tmp_path: Path, owner: str):
    store = SQLiteStore(tmp_path)
    height = Clock(1000)
    sched = Scheduler(store, clock=Clock(T0), block_height=height)
    proc = Message.create(owner=owner, tags=[("Type", "Process"), ("Cron-Frequency", "5-Blocks")])
    sched.spawn(proc.id, proc)
    height.now = 1012
    a = sched.schedule(proc.id, Message.create(owner=owner, target=proc.id, data="x"))
    crons = store.assignments(proc.id, 1, a.slot - 1)
    assert [(c.block_height, c.message.tag("Action")) for c in crons] == [(1005, "Cron"),
                                                                          (1010, "Cron")]
    assert a.slot == 3 and a.block_height == 1012
    store.close()


def test_spawn_rejects_garbage_frequency(tmp_path: Path, owner: str):
    store = SQLiteStore(tmp_path)
    proc = Message.create(owner=owner, tags=[("Type", "Process"), ("Cron-Frequency", "often")])
    with pytest.raises(BadInput):
        Scheduler(store).spawn(proc.id, proc)
    assert store.get_process(proc.id) is None
    store.close()


def test_due_ticks_limit_keeps_the_newest():
    assert due_ticks("1-second", 0, 10_000, 0, limit=3) == [8_000, 9_000, 10_000]
    assert due_ticks("1-second", 0, 2_000, 0, limit=5) == [1_000, 2_000]
    # a huge range is not materialized before the limit applies
    assert due_ticks("1-millisecond", 0, 10**15, 0, limit=1) == [10**15]


def test_long_idle_catch_up_is_bounded(tmp_path: Path, owner: str):
    from aonode.engine.devices.scheduler import MAX_CRON_CATCHUP

    idle = MAX_CRON_CATCHUP + 2_500
    sched = run_schedule(tmp_path, owner, [T0 + idle], freq="1-Millisecond")
    crons = [a for a in sched if a.message.tag("Action") == "Cron"]
    assert len(crons) == MAX_CRON_CATCHUP
    assert crons[0].timestamp == T0 + idle - MAX_CRON_CATCHUP + 1 and crons[-1].timestamp == T0 + idle
    assert sched[-1].message.data == "m0" and verify_chain(sched)
