"""Cron ticking: append the cron messages due by now to every process that has a cron frequency.

The server calls `tick` on a timer, so a cron process runs without any traffic; the ticks are
ordinary assignments (cron@1.0 says which are due, scheduler@1.0 appends them).
"""

from __future__ import annotations

from aonode.engine import metrics
from aonode.engine.devices import cron
from aonode.engine.devices.scheduler import Scheduler
from aonode.engine.views import Views


class CronTicker:
    def __init__(self, scheduler: Scheduler, views: Views) -> None:
        self.scheduler = scheduler
        self.views = views

    def tick(self) -> list[str]:
        """The processes that got cron messages."""
        ticked = []
        for pid in self.scheduler.store.list_processes():
            if cron.frequency_of(self.views.definition(pid)) is None:
                continue
            added = self.scheduler.tick(pid)
            if added:
                metrics.scheduled(len(added))
                self.views.scheduled(pid, added[-1].slot)
                ticked.append(pid)
        return ticked
