"""scheduler@1.0: gives each message of a process its slot, timestamp and hash-chain link.

The schedule is the only input that orders evaluation, so it is written durably before a caller
hears about it, it is append-only, and scheduling the same message twice returns its first slot.

Hash chain: link(n) = base64url(sha256(bytes(link(n-1)) ‖ bytes(message id n))), where bytes()
base64url-decodes (ids that are not base64url are taken as UTF-8). Genesis: link(-1) is empty, so
slot 0's link is sha256 of the process id, which is also the legacy SU's first link.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future

from aonode.engine.devices import cron
from aonode.engine.devices.base import DeviceInfo
from aonode.engine.devices.pending_schedule import PendingView
from aonode.engine.devices.recent_schedule import RecentSchedule
from aonode.engine.errors import BadInput, NotFound
from aonode.engine.later import then
from aonode.engine.message import Message, b64url, b64url_decode
from aonode.engine.store.base import Assignment, Plan, ScheduleView, Store, T

__all__ = ["Assignment", "MAX_CRON_CATCHUP", "PAGE_LIMIT", "Scheduler", "chain_link", "verify_chain"]

NAME = "scheduler@1.0"
INFO = DeviceInfo(
    NAME,
    ("spawn", "schedule", "tick", "slot", "page"),
    stackable=False,
    about="gives each message its slot, timestamp and hash-chain link, cron ticks included",
)
PAGE_LIMIT = 1000
MAX_CRON_CATCHUP = 10_000  # cron ticks appended at most per scheduling call
GENESIS = b""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _id_bytes(text: str) -> bytes:
    if len(text) == 43 and _ID.match(text):  # an id or a link: b64url_decode's own steps, less the checks
        return base64.urlsafe_b64decode(text + "=")
    try:
        return b64url_decode(text)
    except BadInput:
        return text.encode("utf-8")


_ID = re.compile(r"[A-Za-z0-9_-]{43}\Z")
_last_link: tuple[str, bytes] = ("", b"")  # the newest link made here and its bytes: the next one's start


def chain_link(previous: str | None, message_id: str) -> str:
    """The hash-chain value of a slot given the previous slot's value (None for slot 0)."""
    global _last_link
    if previous is None:
        prev = GENESIS
    else:
        made, raw = _last_link  # (one read: another thread may replace it)
        prev = raw if made == previous else _id_bytes(previous)
    digest = hashlib.sha256(prev + _id_bytes(message_id)).digest()
    link = b64url(digest)
    _last_link = (link, digest)
    return link


def verify_chain(assignments: Iterable[Assignment], previous: str | None = None) -> bool:
    """True when consecutive slots link correctly; `previous` is the link before the first one
    (None when the list starts at slot 0)."""
    expected_slot = None
    for a in assignments:
        if expected_slot is not None and a.slot != expected_slot:
            return False
        if a.message.id != a.message_id or a.hash_chain != chain_link(previous, a.message_id):
            return False
        previous, expected_slot = a.hash_chain, a.slot + 1
    return True


class Scheduler:
    """Assigns slots. The store runs each plan with every other sequencer of the process excluded
    (Store.sequence), so concurrent schedules need no lock here: held around `sequence`, one would
    keep them from sharing a group commit (one fsync per message instead of per group). Only a
    spawn takes the process's lock, to list the process after its slot 0."""

    name = NAME

    def __init__(
        self,
        store: Store,
        clock: Callable[[], int] = _wall_ms,
        block_height: Callable[[], int] = lambda: 0,
        block_hash: Callable[[], str | None] = lambda: None,
        crons: cron.Cron | None = None,
    ) -> None:
        self.store = store
        self.recent = RecentSchedule()  # what was committed here, until it is computed
        self.cron = crons or cron.Cron()
        self.clock = clock
        self.block_height = block_height
        self.block_hash = block_hash
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._definitions: dict[str, Message] = {}  # a definition never changes: read and decoded once

    @staticmethod
    def info() -> DeviceInfo:
        return INFO

    def _lock(self, pid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(pid, threading.Lock())

    def _definition(self, pid: str) -> Message:
        definition = self._definitions.get(pid)
        if definition is None:
            definition = self.store.get_process(pid)
            if definition is None:
                raise NotFound(f"process {pid} not found")
            self._definitions[pid] = definition
        return definition

    # -- writing -----------------------------------------------------------------------------

    def spawn(self, pid: str, process_msg: Message) -> Assignment:
        """Register a process; its own message is slot 0. Spawning it again returns slot 0."""
        if pid != process_msg.id:
            raise BadInput(f"process id {pid} must be the id of its process message")
        cron.frequency_of(process_msg)  # reject a garbage Cron-Frequency before anything is stored

        def plan(view: ScheduleView) -> tuple[list[Assignment], Assignment]:
            existing = view.get(0)
            if existing is not None:
                return [], existing
            first = self._next(pid, process_msg, None, self.clock(), self.block_height())
            return [first], first

        with self._lock(pid):
            assignment = self._sequence(pid, plan)
            # After slot 0: a listed process always has its spawn assigned (a crash in between
            # leaves an unlisted slot 0, completed when the spawn is retried).
            self.store.put_process(pid, process_msg)
            return assignment

    def schedule(self, pid: str, msg: Message) -> Assignment:
        """Assign `msg` the next slot (after any cron ticks now due); idempotent by message id.
        The store runs this as one transaction, so nodes sharing a database never fork the chain."""
        return self.schedule_later(pid, msg).result()

    def schedule_later(self, pid: str, msg: Message) -> Future[Assignment]:
        """`schedule` without waiting for the commit: the Future is settled once it is durable."""
        definition = self._definition(pid)

        def plan(view: ScheduleView) -> tuple[Sequence[Assignment], Assignment]:
            pending = PendingView(view)
            return pending.added, self._place(pending, pid, definition, msg)

        return self._sequence_later(pid, plan)

    def schedule_many_later(self, pid: str, msgs: Sequence[Message]) -> Future[list[Assignment]]:
        """`schedule_later` of each of `msgs` in order, as one plan: one request to the store and one
        Future for all (the same slots, chain and timestamps as one call each, read from the same clock).
        A failure fails them all; none is stored."""
        definition = self._definition(pid)

        def plan(view: ScheduleView) -> tuple[Sequence[Assignment], list[Assignment]]:
            pending = PendingView(view, [msg.id for msg in msgs])
            return pending.added, [self._place(pending, pid, definition, msg) for msg in msgs]

        return self._sequence_later(pid, plan, len(msgs))

    def _place(self, view: PendingView, pid: str, definition: Message, msg: Message) -> Assignment:
        """`msg`'s assignment: the one it has (already scheduled), or the next slot after any cron ticks
        due by now, both added to `view`."""
        existing = view.for_message(msg.id)
        if existing is not None:
            return existing
        last = self._last(view, pid)
        now_ts, now_height = self._now(last)
        batch = self._cron_batch(view, definition, last, now_ts, now_height)
        a = self._next(pid, msg, batch[-1] if batch else last, now_ts, now_height)
        view.add([*batch, a])
        return a

    def tick(self, pid: str) -> list[Assignment]:
        """Append the cron messages due by now without any other message (e.g. before `now`)."""
        definition = self._definition(pid)
        if cron.frequency_of(definition) is None:
            return []

        def plan(view: ScheduleView) -> tuple[list[Assignment], list[Assignment]]:
            last = self._last(view, pid)
            now_ts, now_height = self._now(last)
            batch = self._cron_batch(view, definition, last, now_ts, now_height)
            return batch, batch

        return self._sequence(pid, plan)

    def _sequence(self, pid: str, plan: Plan[T]) -> T:
        return self._sequence_later(pid, plan).result()

    def _sequence_later(self, pid: str, plan: Plan[T], size: int = 1) -> Future[T]:
        """store.sequence_later; once committed, the appended assignments are kept in `recent` for
        the compute (before the answer is given)."""
        appended: list[Sequence[Assignment]] = [()]

        def recorded(view: ScheduleView) -> tuple[Sequence[Assignment], T]:
            batch, answer = plan(view)
            appended[0] = batch
            return batch, answer

        def committed(answer: T) -> T:
            self.recent.committed(appended[0])
            return answer

        return then(self.store.sequence_later(pid, recorded, size), committed)

    def _now(self, last: Assignment) -> tuple[int, int]:
        """Time and block height for the next slot: never behind the previous slot's."""
        return max(self.clock(), last.timestamp), max(self.block_height(), last.block_height)

    @staticmethod
    def _last(view: ScheduleView, pid: str) -> Assignment:
        last = view.last()
        if last is None:
            raise NotFound(f"process {pid} has no schedule")
        return last

    def _cron_batch(
        self, view: ScheduleView, definition: Message, last: Assignment, now_ts: int, now_height: int
    ) -> list[Assignment]:
        """One cron message per period boundary since the last assignment (stored with the rest of
        the plan, in one transaction). After a long idle time only the newest MAX_CRON_CATCHUP
        ticks are kept; the schedule records what was kept, so replays stay identical."""
        if cron.frequency_of(definition) is None:
            return []
        pid = last.process
        spawn = view.get(0)
        assert spawn is not None  # _last() found a schedule, so slot 0 exists
        batch: list[Assignment] = []
        for tick in self.cron.ticks(pid, definition, spawn, last, now_ts, now_height, MAX_CRON_CATCHUP):
            last = self._next(pid, tick.message, last, tick.timestamp, tick.block_height)
            batch.append(last)
        return batch

    def _next(self, pid: str, msg: Message, last: Assignment | None, ts: int, height: int) -> Assignment:
        """The assignment that would follow `last` (not stored)."""
        return Assignment(
            process=pid,
            slot=0 if last is None else last.slot + 1,
            message_id=msg.id,
            timestamp=ts,
            block_height=height,
            block_hash=self.block_hash(),
            epoch=0,
            hash_chain=chain_link(None if last is None else last.hash_chain, msg.id),
            message=msg,
        )

    # -- reading -----------------------------------------------------------------------------

    def current_slot(self, pid: str) -> int:
        self._definition(pid)
        last = self.store.last_assignment(pid)
        if last is None:
            raise NotFound(f"process {pid} has no schedule")
        return last.slot

    def page(
        self, pid: str, frm: int = 0, to: int | None = None, limit: int = PAGE_LIMIT
    ) -> tuple[list[Assignment], bool]:
        """Assignments with `frm <= slot <= to`, at most `limit` (capped at 1000); `continues`
        says more exist within the range."""
        self._definition(pid)
        if frm < 0 or (to is not None and to < frm):
            raise BadInput(f"bad schedule range from={frm} to={to}")
        limit = max(1, min(limit, PAGE_LIMIT))
        rows = self.store.assignments(pid, frm, to, limit + 1)
        return rows[:limit], len(rows) > limit
