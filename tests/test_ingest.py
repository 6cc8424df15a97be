"""server/ingest.py on a real Node and store: schedules checked on a few threads and handed to the
group commit without a thread waiting on each, answered on the event loop once durable."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from aonode.engine.devices.scheduler import verify_chain
from aonode.engine.errors import BadInput, Busy, NotFound
from aonode.engine.message import Message
from aonode.engine.node import Node
from aonode.server.ingest import Ingest
from tests.helpers.ingest import node, ping, spawned  # noqa: F401 - node: the fixture


def test_concurrent_schedules_are_answered_in_one_chain_and_a_bad_one_fails_alone(node: Node) -> None:
    pid = spawned(node)
    ingest = Ingest(node, limit=1000)

    def refused() -> tuple[str, Message]:
        raise BadInput("the data item's signature does not verify")

    async def main() -> list[object]:
        jobs = [ingest.schedule(lambda n=n: (pid, ping(node, n))) for n in range(1, 41)]
        jobs.insert(20, ingest.schedule(refused))
        return await asyncio.gather(*jobs, return_exceptions=True)

    outcomes = asyncio.run(main())
    refusal = outcomes.pop(20)
    assert isinstance(refusal, BadInput)
    slots = sorted(a["slot"] for a in outcomes)  # type: ignore[index]
    assert slots == list(range(1, 41)) and ingest.pending == 0
    stored = node.router.scheduler.store.assignments(pid)
    assert verify_chain(stored) and {a.message_id for a in stored[1:]} == {a["message"] for a in outcomes}  # type: ignore[index]


def test_past_the_limit_busy_at_once_and_an_unknown_process_is_not_found(node: Node) -> None:
    pid = spawned(node)
    ingest = Ingest(node, limit=2)
    release = threading.Event()

    def held(n: int) -> tuple[str, Message]:
        release.wait(30)
        return pid, ping(node, n)

    async def main() -> None:
        first = asyncio.ensure_future(ingest.schedule(lambda: held(1)))
        second = asyncio.ensure_future(ingest.schedule(lambda: held(2)))
        await asyncio.sleep(0)
        with pytest.raises(Busy):
            await ingest.schedule(lambda: (pid, ping(node, 3)))
        release.set()
        assert sorted([(await first)["slot"], (await second)["slot"]]) == [1, 2]
        with pytest.raises(NotFound):
            await ingest.schedule(lambda: ("N" * 43, ping(node, 4)))

    asyncio.run(main())


def test_idle_checkers_end_and_come_back(node: Node) -> None:
    pid = spawned(node)
    ingest = Ingest(node, limit=10, idle_seconds=0.05)
    assert asyncio.run(ingest.schedule(lambda: (pid, ping(node, 1))))["slot"] == 1
    deadline = time.monotonic() + 10
    while ingest.checkers_running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ingest.checkers_running == 0
    assert asyncio.run(ingest.schedule(lambda: (pid, ping(node, 2))))["slot"] == 2
