"""Issue 10 item 7: fetching a missing image never holds a compute worker: it runs on the image
fetcher's own threads, a spawn waits a bounded time (then 503 Busy), the same image is fetched once
at a time, and a failure is remembered for a while instead of being fetched again."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aonode.engine.errors import Busy, ModuleError
from aonode.engine.images import Catalogue, ResolvedImage
from aonode.engine.message import Message
from aonode.engine.node import Node

OWNER = "O" * 43


def test_a_slow_failing_fetch_is_bounded_shared_and_remembered(tmp_path: Path) -> None:
    calls: list[str] = []
    release = threading.Event()

    def resolve(ref: str) -> ResolvedImage:
        calls.append(ref)
        release.wait(30)  # an offline npm / gateway attempt
        raise ModuleError(f"cannot fetch {ref}: offline")

    node = Node(tmp_path, True, catalogue=Catalogue(resolve=resolve))
    node.images.fetch_wait = 0.3
    try:
        spawn = Message.create(owner=OWNER, tags=[("Module", "missing-image")])
        for _ in range(3):  # each answers at once-ish with Busy; one fetch runs meanwhile
            with pytest.raises(Busy):
                node.spawn(spawn)
        assert calls == ["missing-image"]
        release.set()
        deadline = time.monotonic() + 10
        while node.images._fetching and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(3):  # the failure is remembered: refused without fetching again
            with pytest.raises(ModuleError, match="offline"):
                node.spawn(spawn)
        assert calls == ["missing-image"]
        assert node.info()["processes"] == []
    finally:
        release.set()
        node.close()
