"""How a group commit gathers its group (engine/store/group_commit.py, `_gather`): after a commit, the
next group waits for the requests of the senders that commit answered (a closed loop of senders then
shares one fsync instead of splitting into two groups that take turns), but never past the deadline,
and a lone sender never waits at all. Each answer still comes only after its own group's commit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from aonode.engine.store.group_commit import GroupCommitter

HELD = 3.0  # seconds the first commit is held (unless released): the longest the next group may then wait
PATIENT = 30.0  # the committer's own cap, far above HELD: the last commit's time bounds the wait


class Recorder:
    """A transaction that records each group's requests (by their answers) and can hold the first commit."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.hold = threading.Event()
        self.held = threading.Event()  # the first commit is running (and held until `hold` is set)

    def transaction(self, steps: Sequence[Callable[[], None]]) -> None:
        self.groups.append([])
        if len(self.groups) == 1:
            self.held.set()
            self.hold.wait(HELD)
        for step in steps:
            step()


def submit(committer: GroupCommitter, recorder: Recorder, name: str) -> Future[str]:
    def run() -> str:
        recorder.groups[-1].append(name)
        return name

    return committer.submit_later(run, key="p")


def test_the_next_group_waits_for_what_the_last_commit_answered() -> None:
    """A is committed while B waits; A's next request (sent once A is answered) joins B's group."""
    recorder = Recorder()
    committer = GroupCommitter(recorder.transaction, "test-commit", PATIENT)
    try:
        a = submit(committer, recorder, "a")
        assert recorder.held.wait(10)
        b = submit(committer, recorder, "b")  # queued while A's commit runs
        assert not b.done()
        assert a.result(10 + HELD) == "a"
        a2 = submit(committer, recorder, "a2")  # A's sender goes on: the group holding B waits for it
        assert (b.result(10 + HELD), a2.result(10 + HELD)) == ("b", "a2")
        assert recorder.groups == [["a"], ["b", "a2"]]
    finally:
        committer.close()


def test_a_group_stops_waiting_at_the_deadline() -> None:
    """A's sender sends nothing more: B's group waits at most as long as A's commit took, then commits."""
    recorder = Recorder()
    committer = GroupCommitter(recorder.transaction, "test-commit", PATIENT)
    try:
        a = submit(committer, recorder, "a")
        assert recorder.held.wait(10)
        b = submit(committer, recorder, "b")
        recorder.hold.set()  # A's commit ends at once: B's group waits no longer than that took
        assert a.result(10) == "a" and b.result(10) == "b"
        assert recorder.groups == [["a"], ["b"]]
    finally:
        committer.close()


def test_a_lone_sender_is_never_kept_waiting() -> None:
    """One sender, one request at a time, after a commit that took HELD: each group holds all it
    expects at once (the one answered sends the next), so none waits out its deadline (HELD)."""
    recorder = Recorder()
    committer = GroupCommitter(recorder.transaction, "test-commit", PATIENT)
    try:
        assert submit(committer, recorder, "0").result(10 + HELD) == "0"
        for n in range(1, 6):
            assert submit(committer, recorder, str(n)).result(HELD / 2) == str(n)
        assert recorder.groups == [[str(n)] for n in range(6)]
    finally:
        committer.close()
