"""A backlog computed with each wasm call ahead of the previous slot's post-processing (engine/devices/
wasm_ahead.py) gives what computing one slot at a time gives: the same views (results, cache), the same
snapshots and the same memory sha256 at every slot, through handler errors, a wasm trap, a failure while
finishing a slot and a restart mid-backlog."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import aonode.engine.devices.pace as pace
import aonode.engine.devices.wasm_ahead as wasm_ahead
from aonode.engine.devices.wasm_ahead import AHEAD, BATCHES, SWITCH
from aonode.engine.errors import Busy
from aonode.engine.message import Message
from aonode.engine.node import Node
from tests.helpers.backlog import (
    EVERY_FOURTH,
    EVERY_SLOT,
    RECIPIENT,
    TOKEN,
    AtSlot,
    Recorded,
    Reference,
    backlog,
    check_same,
    fail,
    one_at_a_time,
    recording,
    setup,
)
from tests.helpers.nodeutil import OWNER, definition, eval_msg, make_node, output
from tests.helpers.threads import started

pytestmark = pytest.mark.slow  # several backlogs on the real aos2_0_6 image, twice each


@pytest.fixture(autouse=True)
def always_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """These backlogs run their wasm ahead whatever pace.py would choose."""
    monkeypatch.setenv(SWITCH, "1")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return one_at_a_time(tmp_path_factory.mktemp("one") / "node", EVERY_SLOT)


@pytest.fixture(scope="module")
def sparse_reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return one_at_a_time(tmp_path_factory.mktemp("sparse") / "node", EVERY_FOURTH)


def test_the_one_at_a_time_run_has_the_cases_it_claims(reference: Reference) -> None:
    errors = [v["results"]["Error"] for v in reference.views if v["results"].get("Error")]
    assert any("boom at" in e for e in errors) and any("MemoryLimitExceeded" in e for e in errors), errors
    assert reference.views[-1]["cache"]["balances"][RECIPIENT] > 0
    assert len(reference.begun_on) == len(backlog("p"))
    assert all(name == threading.main_thread().name for name in reference.begun_on)  # nothing ran ahead there


def check_backlog(tmp_path: Path, reference: Reference) -> list[str]:
    """Compute the backlog with one `now`, check it against `reference`; the threads its slots began on."""
    node = make_node(tmp_path / "node")
    seen = recording(node)
    pid = setup(node)
    started = len(seen.begun_on)
    node.now(pid)
    check_same(node, pid, reference, seen)
    node.close()
    return seen.begun_on[started:]


def test_backlog_run_ahead_is_the_same_at_every_slot(tmp_path: Path, reference: Reference) -> None:
    ahead = check_backlog(tmp_path, reference)
    assert sum(name.startswith("aonode-wasm-ahead") for name in ahead) == len(ahead) == len(backlog("p"))


@pytest.mark.parametrize("wake_every", [1, AHEAD])
def test_the_compute_thread_woken_per_slot_or_per_ahead_slots_is_the_same_at_every_slot(
    tmp_path: Path, reference: Reference, monkeypatch: pytest.MonkeyPatch, wake_every: int
) -> None:
    """The worker hands its begun slots over one per wake-up, or only once AHEAD are begun (or it
    waits): slot_handover.py. When the compute thread wakes never changes what it computes."""
    monkeypatch.setattr(wasm_ahead, "WAKE_EVERY", wake_every)
    ahead = check_backlog(tmp_path, reference)
    assert sum(name.startswith("aonode-wasm-ahead") for name in ahead) == len(ahead) == len(backlog("p"))


def test_backlog_run_ahead_in_batches_is_the_same_at_every_slot(
    tmp_path: Path, reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SWITCH, BATCHES)
    ran = check_backlog(tmp_path, reference)
    assert ran == [threading.main_thread().name] * len(backlog("p"))  # no second thread


class Alternating:
    """Says wasm should run on the worker thread for `every` slots, then in batches, and so on."""

    def __init__(self, every: int) -> None:
        self.every, self.asked = every, 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def ahead_pays(self) -> bool:
        self.asked += 1
        return (self.asked // self.every) % 2 == 0

    def finished(self, ahead: bool) -> None:
        pass


def test_a_backlog_that_changes_strategy_as_it_goes_is_the_same_at_every_slot(
    tmp_path: Path, reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wasm ahead on the worker thread, then in batches on the compute thread, and so on (pace.py's
    choice mid-backlog)."""
    monkeypatch.delenv(SWITCH)
    monkeypatch.setattr(wasm_ahead, "choice", lambda state: Alternating(3))
    ran = check_backlog(tmp_path, reference)
    assert len(ran) == len(backlog("p"))
    here = [name == threading.main_thread().name for name in ran]
    assert sum(a != b for a, b in zip(here, here[1:], strict=False)) >= 3, ran  # both ways, more than once


def test_a_choice_that_flips_at_every_ask_still_computes_the_backlog(
    tmp_path: Path, reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A choice may change its mind at every ask with no slot finished (pace.Pace changes it only when a
    slot finishes; the contract allows more): each way begins one slot at least before it hands over, so
    the backlog is computed, the same at every slot (before, the two ways handed over to each other for
    ever, neither beginning a slot)."""
    monkeypatch.delenv(SWITCH)
    monkeypatch.setattr(wasm_ahead, "choice", lambda state: Alternating(1))
    ran = started(lambda: check_backlog(tmp_path, reference)).join(240, "the backlog is not computed")[0]
    assert len(ran) == len(backlog("p"))
    ahead = [name.startswith("aonode-wasm-ahead") for name in ran]
    assert sum(a != b for a, b in zip(ahead, ahead[1:], strict=False)) >= 3, ran  # both ways, more than once


def test_the_measured_choice_switching_every_two_slots_is_the_same_at_every_slot(
    tmp_path: Path, reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pace.py itself, with windows of two finished slots and the other way measured after each: it
    switches mid-backlog (once the slots begun are finished), measuring what the slots' finishes
    tell it (the setup's two slots ran ahead: the backlog starts in batches)."""
    monkeypatch.delenv(SWITCH)
    monkeypatch.setattr(pace, "WARMUP_SLOTS", 0)
    monkeypatch.setattr(pace, "WINDOW_SLOTS", 2)
    monkeypatch.setattr(pace, "WINDOW", 0.0)
    monkeypatch.setattr(pace, "EXPLORE", 0.0)
    measured: list[pace.Pace] = []
    monkeypatch.setattr(wasm_ahead, "Pace", lambda: measured.append(pace.Pace(cpus=2)) or measured[-1])
    ran = check_backlog(tmp_path, reference)
    here = [name == threading.main_thread().name for name in ran]
    assert here[0] and not here[-1] and sum(a != b for a, b in zip(here, here[1:], strict=False)) >= 1, ran
    assert set(measured[0].per_slot) == {True, False}


def stored_results(node: Node, pid: str) -> list[int]:
    return sorted(slot for slot, _ in node.store.results(pid, 0, 10_000))


@pytest.mark.parametrize("way", ["1", BATCHES])  # on the worker thread, in batches on the compute thread
@pytest.mark.parametrize("failing_slot", [9, -1])  # -1: the backlog's last slot, nothing begun past it
def test_a_failure_finishing_a_slot_surfaces_and_the_next_read_recomputes(
    tmp_path: Path, reference: Reference, failing_slot: int, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SWITCH, way)
    node = make_node(tmp_path / "node")
    seen = recording(node)
    pid = setup(node)
    failing_slot = failing_slot if failing_slot >= 0 else node.slot(pid)["current"]
    node.processes.after = [*node.processes.after, AtSlot(failing_slot, fail("disk on fire"))]
    with pytest.raises(RuntimeError, match="disk on fire"):
        node.now(pid)
    assert stored_results(node, pid) == list(range(failing_slot))  # nothing at or past the failed slot
    node.now(pid)  # its memory had run past the failed slot: restored from the snapshot before it, recomputed
    check_same(node, pid, reference, seen)
    node.close()


def test_a_failure_finishing_a_slot_computed_alone_is_computed_again(tmp_path: Path, reference: Reference) -> None:
    """One slot at a time (no worker): the failed slot's result is stored by the next read, not skipped."""
    node = make_node(tmp_path / "node")
    seen = recording(node)
    pid = node.spawn(EVERY_SLOT)["process"]
    node.schedule(pid, eval_msg(pid, TOKEN))
    node.now(pid)
    for message in backlog(pid):
        slot = node.schedule(pid, message)["slot"]
        if slot == 9:
            node.processes.after = [*node.processes.after, AtSlot(slot, fail("disk on fire"))]
            with pytest.raises(RuntimeError, match="disk on fire"):
                node.now(pid)
        assert node.now(pid)["at-slot"] == slot
    check_same(node, pid, reference, seen)
    node.close()


def interrupted_then_restarted(
    data: Path, definition: Message, interrupt: Callable[[Node], AtSlot], error: type[Exception]
) -> tuple[Node, str, Recorded, Recorded]:
    """A backlog interrupted with `error` by the device `interrupt` gives, the node closed, restarted
    and the rest computed: (the restarted node, the process, what each node stored)."""
    node = make_node(data)
    before = recording(node)
    pid = setup(node, definition)
    device = interrupt(node)
    node.processes.after = [*node.processes.after, device]
    with pytest.raises(error) as raised:
        node.now(pid)
    assert device.raised is None or raised.value is device.raised  # the error that ended it, not a later one
    stored = stored_results(node, pid)
    assert stored == list(range(len(stored)))  # stored in order, nothing past a gap
    node.close()
    restarted = make_node(data)
    after = recording(restarted)
    restarted.now(pid)
    return restarted, pid, before, after


@pytest.mark.parametrize("failing_slot", [6, 7])
def test_a_restart_after_a_failure_mid_backlog_recomputes_the_same(
    tmp_path: Path, sparse_reference: Reference, failing_slot: int
) -> None:
    """Cache-Frequency 4: the live state failed at a slot with no snapshot of its own, its memory
    ahead of it; closing the node must not snapshot that memory as the slot it failed at."""
    node, pid, before, after = interrupted_then_restarted(
        tmp_path / "node", EVERY_FOURTH, lambda _: AtSlot(failing_slot, fail("power cut")), RuntimeError
    )
    check_same(node, pid, sparse_reference, before, after)
    node.close()


def test_a_stopping_node_finishes_the_slot_ahead_and_stops(tmp_path: Path, reference: Reference) -> None:
    node, pid, before, after = interrupted_then_restarted(
        tmp_path / "node", EVERY_SLOT, lambda n: AtSlot(7, n.processes.stopping.set), Busy
    )
    # The slots begun when it stopped (AHEAD of slot 7) were finished, then the stop.
    assert max(slot for slot, _ in before.snapshots) == 7 + AHEAD
    check_same(node, pid, reference, before, after)
    node.close()


def test_reads_eviction_and_snapshots_while_a_backlog_runs_ahead(tmp_path: Path, reference: Reference) -> None:
    """Held while finishing slot 6 (the worker AHEAD slots past it): `now`, a slot not stored yet, a
    dry-run and a snapshot of the same process wait for the backlog; the last stored state answers at
    once; another process made live over the limit does not evict the busy one; all answer as one slot
    at a time does."""
    node = make_node(tmp_path / "node")
    node.live.max_live = 1
    pid = setup(node)
    other = node.spawn(definition(("Name", "other")))["process"]
    node.now(other)  # `pid` is evicted, then made live again by the backlog, which evicts `other`
    seen = recording(node)  # from here only `pid` stores snapshots
    holding, go = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        assert go.wait(120)

    node.processes.after = [*node.processes.after, AtSlot(6, hold)]
    answers: dict[str, object] = {}

    def ask(name: str, read: Callable[[], object]) -> threading.Thread:
        def run() -> None:
            try:
                answers[name] = read()
            except BaseException as err:  # noqa: BLE001 - the test reports it below
                answers[name] = err

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    backlog_run = ask("backlog", lambda: node.now(pid))
    assert holding.wait(120)
    readers = [
        ask("now", lambda: node.now(pid)),
        ask("slot 4", lambda: node.compute(pid, 4)),
        ask("dry-run", lambda: node.dry_run(pid, eval_msg(pid, "return Balances[Owner]", nonce="dry"))),
        ask("snapshot", lambda: node.snapshot(pid)),
    ]
    assert node.compute(pid)["at-slot"] == 1  # the last stored state, at once
    # made live over max_live (restored, forked: nothing waits for the snapshot threads, which the
    # backlog's snapshots of the slots ahead hold until those slots are finished): the busy one stays
    assert output(node.dry_run(other, eval_msg(other, "return 6 * 7", nonce="other"))) == "42"
    assert pid in node.live._live
    assert all(thread.is_alive() for thread in readers)  # they wait for the backlog
    go.set()
    for thread in (backlog_run, *readers):
        thread.join(120)
        assert not thread.is_alive()
    assert not any(isinstance(answer, BaseException) for answer in answers.values()), answers
    last = len(reference.views) - 1
    assert answers["backlog"] == answers["now"] == reference.views[last]
    assert answers["slot 4"] == reference.views[4]
    dry = answers["dry-run"]
    assert isinstance(dry, dict) and dry["at-slot"] == last
    assert output(dry) == str(reference.views[last]["cache"]["balances"][OWNER])
    assert answers["snapshot"] == {"process": pid, "slot": last, "memory-sha256": reference.memory_at[last]}
    check_same(node, pid, reference, seen)
    node.close()
