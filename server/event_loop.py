"""The serving event loop, for the node's process and its ingest workers alike.

Its own module so that a worker (server/ingest_worker.py) gets it without importing hypercorn: a
worker's start overlaps the node's on the same cores (server/ingest_workers.py), so what it imports
is CPU the node's first answer waits for.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when installed (AONODE_UVLOOP=0: asyncio's own, to compare), else asyncio's.

    Why: the event loop thread carries all of HTTP/1.1 (hypercorn) and the app's awaits, and under signed
    ingest it holds the GIL more than every other thread together; uvloop's transports and scheduling
    cost less CPU per request than asyncio's selector loop (bench/bench_ingest.py)."""
    if os.environ.get("AONODE_UVLOOP", "1") != "0":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_served(main: Coroutine[object, object, None]) -> None:
    """`asyncio.run(main)` on the serving event loop (event_loop_factory)."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main)
