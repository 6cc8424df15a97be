"""Progress a person can see: long work (preparing an image's fast variant, fetching an image,
replaying many slots after a restart) registers a task here; the dashboard lists the tasks, and
when a terminal is watching (`report_to`, set by the CLI) each task shows as a bar on a terminal
or as plain lines in a log.

Kept tiny and thread-safe: tasks advance from worker threads while the server reads the list.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm

LINE_EVERY = 2.0  # seconds between two plain progress lines of one task
KEEP_FINISHED = 8  # finished tasks the dashboard still shows


@dataclass
class Task:
    id: int
    label: str
    total: int | None
    unit: str
    done: int = 0
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None
    _bar: tqdm | None = field(default=None, repr=False)
    _stream: TextIO | None = field(default=None, repr=False)
    _last_line: float = field(default=0.0, repr=False)

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        self.updated = time.time()
        if self._bar is not None:
            self._bar.update(amount)
        elif self._stream is not None and self.updated - self._last_line >= LINE_EVERY:
            self._line()

    def _line(self, suffix: str = "") -> None:
        if self._stream is None:
            return
        self._last_line = time.time()
        amount = f"{self.done}/{self.total}" if self.total else str(self.done)
        percent = f" {100 * self.done // self.total}%" if self.total else ""
        try:
            print(
                f"aonode: {self.label}:{percent} {amount} {self.unit}{suffix}".rstrip(), file=self._stream, flush=True
            )
        except (OSError, ValueError):  # the log went away (a closed pipe): the work goes on without it
            self._stream = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "label": self.label,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            "started": self.started,
            "updated": self.updated,
            "finished": self.finished,
            "error": self.error,
            "fraction": (min(1.0, self.done / self.total) if self.total else None),
        }


class Progress:
    """The registry of running (and a few finished) tasks."""

    def __init__(self) -> None:
        self._tasks: dict[int, Task] = {}
        self._ids = itertools.count(1)
        self._guard = threading.Lock()
        self.stream: TextIO | None = None

    def report_to(self, stream: TextIO | None) -> None:
        """Show tasks on `stream` too: a bar when it is a terminal, plain lines otherwise."""
        self.stream = stream

    @contextmanager
    def task(self, label: str, total: int | None = None, unit: str = "") -> Iterator[Task]:
        task = Task(next(self._ids), label, total, unit)
        stream = self.stream if self.stream is not None and not self.stream.closed else None
        if stream is not None and stream.isatty():
            from tqdm import tqdm  # only for a terminal: a node's start (logging to a file) skips ~0.1 s

            task._bar = tqdm(
                total=total, desc=label, unit=unit or "it", unit_scale=unit == "B", file=stream, leave=False
            )
        elif stream is not None:
            task._stream = stream
            task._line(" (started)")
        with self._guard:
            self._tasks[task.id] = task
        try:
            yield task
        except BaseException as err:
            task.error = f"{type(err).__name__}: {err}"
            raise
        finally:
            task.finished = time.time()
            if task._bar is not None:
                task._bar.close()
            else:
                took = task.finished - task.started
                task._line(f" (failed: {task.error})" if task.error else f" (done in {took:.1f}s)")
            self._forget_old()

    def _forget_old(self) -> None:
        with self._guard:
            finished = sorted((t for t in self._tasks.values() if t.finished), key=lambda t: t.finished or 0)
            for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                del self._tasks[old.id]

    def tasks(self) -> list[dict[str, object]]:
        """Running tasks first, then the most recently finished."""
        with self._guard:
            tasks = list(self._tasks.values())
        tasks.sort(key=lambda t: (t.finished is not None, -(t.finished or t.started)))
        return [t.to_json() for t in tasks]


PROGRESS = Progress()  # the node's one registry: the engine writes, the dashboard and CLI read
