"""The per-app state every route handler reaches: one Node, the two pools, the limits, the dev flag,
the answer signer.

Handlers find it as `server_of(request)` (it is `app.state.server`), so route modules need not be
built around one app and new route lists plug in without touching the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import anyio
from starlette.applications import Starlette
from starlette.requests import Request

from aonode.engine.errors import Busy
from aonode.server.api import NodeAPI
from aonode.server.gates import Gate, Limits
from aonode.server.ingest import Ingest
from aonode.server.signing import AnswerSigner

log = logging.getLogger("aonode.server")


@dataclass
class Server:
    """What the routes share for one Node."""

    node: NodeAPI
    dev: bool = False
    limits: Limits = field(default_factory=Limits)
    signer: AnswerSigner | None = None  # signs answers (server/signing.py); None: answers go unsigned

    def __post_init__(self) -> None:
        self.compute_gate = Gate(self.limits.compute_workers, self.limits.compute_queue, "compute")
        self.quick_gate = Gate(self.limits.quick_workers, self.limits.quick_queue, "read")
        self.ingest = Ingest(self.node, self.limits.quick_workers + self.limits.quick_queue)

    def in_flight(self) -> int:
        """Engine calls still running in worker threads (the Node must not close under them)."""
        return self.compute_gate.pending + self.quick_gate.pending + self.ingest.pending

    async def run_crons(self, every: float) -> None:
        """Every `every` seconds: schedule the cron messages now due, then compute those processes (so
        their outboxes are delivered and `compute` reads see the ticks) on the compute pool."""
        while True:
            await anyio.sleep(every)
            try:
                ticked = await self.quick_gate.run(self.node.tick_crons)
            except Busy:
                continue  # the read pool is full: try again next round
            except Exception:  # noqa: BLE001 - a store error must not end the cron task
                log.exception("cron round failed")
                continue
            for pid in ticked:
                try:
                    await self.compute_gate.run(self.node.now, pid)
                except Busy:
                    break  # the pool is full of requests: reads compute these when they come
                except Exception:  # noqa: BLE001 - one bad process must not stop cron for the others
                    log.exception("cron: computing %s failed", pid)


def server_of_app(app: Starlette) -> Server:
    server = app.state.server
    assert isinstance(server, Server)
    return server


def server_of(request: Request) -> Server:
    return server_of_app(request.app)
