"""cron@1.0: periodic messages that are part of the schedule, not a side channel.

A process with `Cron-Frequency: 10-Minutes` gets a cron message at every period boundary of message
time, counted from its spawn. The scheduler inserts them when it next assigns a slot, so they have
real slots, appear in `/schedule`, and a replay evaluates exactly the same sequence.
`N-Blocks` counts block heights instead of milliseconds (the legacy CU's unit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aonode.engine.devices.base import DeviceInfo
from aonode.engine.errors import BadInput
from aonode.engine.message import Message
from aonode.engine.store.base import Assignment

NAME = "cron@1.0"
INFO = DeviceInfo(
    NAME,
    ("ticks",),
    stackable=False,
    about="the cron messages due on a process's schedule (the scheduler appends them)",
)
# Tag names a process definition may use for its frequency (the seed docs' and the legacy CU's).
FREQUENCY_TAGS = ("Cron-Frequency", "Cron-Interval")
# A definition tag `Cron-Tag-<Name>: <value>` becomes the tag `<Name>: <value>` on each cron message.
EXTRA_TAG_PREFIX = "cron-tag-"

_UNIT_MS = {
    "millisecond": 1,
    "second": 1_000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 604_800_000,
}
_FREQ = re.compile(r"^\s*(\d+)\s*-\s*([A-Za-z]+?)s?\s*$")


@dataclass(frozen=True)
class Frequency:
    """`period` is in milliseconds, or in blocks when `by_blocks`."""

    period: int
    by_blocks: bool = False


def parse_frequency(text: object) -> Frequency:
    """Parse `10-Minutes`, `1-second`, `500-Milliseconds`, `5-Blocks` (case-insensitive)."""
    if not isinstance(text, str):
        raise BadInput(f"Cron-Frequency must be a string like '10-Minutes', got {text!r:.60}")
    match = _FREQ.match(text)
    if not match:
        raise BadInput(f"Cron-Frequency must look like '10-Minutes': {text!r:.60}")
    amount, unit = int(match.group(1)), match.group(2).lower()
    if amount <= 0:
        raise BadInput(f"Cron-Frequency must be positive: {text!r:.60}")
    if unit == "block":
        return Frequency(amount, by_blocks=True)
    if unit not in _UNIT_MS:
        raise BadInput(
            f"Cron-Frequency unit must be one of milliseconds, seconds, minutes, hours, "
            f"days, weeks, blocks: {text!r:.60}"
        )
    return Frequency(amount * _UNIT_MS[unit])


def frequency_of(definition: Message) -> Frequency | None:
    """The cron frequency a process definition asks for, or None."""
    for name in FREQUENCY_TAGS:
        value = definition.tag(name)
        if value is not None:
            return parse_frequency(value)
    return None


def due_ticks(freq: Frequency | str, last: int, now: int, origin: int, limit: int | None = None) -> list[int]:
    """Period boundaries `origin + k*period` (k >= 1) in the half-open range (last, now].

    Units are whatever `freq` counts (ms or block heights). Pure, so the same inputs always give the
    same ticks. `limit` keeps only the newest ticks (without building the rest).
    """
    if isinstance(freq, str):
        freq = parse_frequency(freq)
    period = freq.period
    if now <= last:
        return []
    first_k = max(1, (last - origin) // period + 1)
    last_k = (now - origin) // period
    ks = range(first_k, last_k + 1)
    if limit is not None:
        ks = ks[max(0, len(ks) - limit) :]
    return [origin + k * period for k in ks]


def cron_message(pid: str, definition: Message, tick: int) -> Message:
    """The deterministic cron message for one tick: the same tick always gives the same id."""
    tags: list[tuple[str, str]] = [("Action", "Cron"), ("Type", "Message"), ("Cron-Tick", str(tick))]
    base = Message.create(owner=pid, target=pid, tags=tags, from_=pid)
    extra = {
        name[len(EXTRA_TAG_PREFIX) :]: value
        for name, value in definition.tags
        if name.lower().startswith(EXTRA_TAG_PREFIX) and len(name) > len(EXTRA_TAG_PREFIX)
    }
    if not extra:
        return base
    # Extra tags are content: recompute the id so different cron payloads never share one.
    merged = base.with_tags(**extra)
    return Message.create(owner=pid, target=pid, tags=merged.tags, from_=pid)


@dataclass(frozen=True)
class Tick:
    """One due cron message and the time and block height its assignment gets."""

    message: Message
    timestamp: int
    block_height: int


@dataclass(frozen=True)
class Cron:
    """The device form: which cron messages are due after `last`, counted from the spawn."""

    name: str = NAME

    @staticmethod
    def info() -> DeviceInfo:
        return INFO

    def ticks(
        self,
        pid: str,
        definition: Message,
        spawn: Assignment,
        last: Assignment,
        now_ts: int,
        now_height: int,
        limit: int | None = None,
    ) -> list[Tick]:
        freq = frequency_of(definition)
        if freq is None:
            return []
        if freq.by_blocks:
            due = due_ticks(freq, last.block_height, now_height, spawn.block_height, limit)
            return [Tick(cron_message(pid, definition, t), now_ts, t) for t in due]
        due = due_ticks(freq, last.timestamp, now_ts, spawn.timestamp, limit)
        return [Tick(cron_message(pid, definition, t), t, now_height) for t in due]
