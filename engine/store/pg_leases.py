"""PgLeases: compute leases (engine/leases.py) in PostgreSQL's `leases` table, with LISTEN/NOTIFY.

A claim locks the process's row with FOR UPDATE SKIP LOCKED (a node never queues behind another's
claim); expiry is on the database's clock, so node clocks do not matter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg_pool import ConnectionPool

from aonode.engine.leases import Claim, LeaseConfig

WORK = "aonode_work"
COMPUTED = "aonode_computed"
POLL = 0.25  # a missed notice costs a waiter at most this long
log = logging.getLogger("aonode.leases")


class PgLeases:
    """Leases in the `leases` table. One background thread LISTENs for notices and renews the
    leases this node holds every ttl/3; work asked of this node runs on a small pool."""

    def __init__(
        self,
        pool: ConnectionPool,
        dsn: str,
        owner: str,
        config: LeaseConfig,
        on_work: Callable[[str], object],
        on_lost: Callable[[str], object],
    ) -> None:
        self.pool, self.dsn, self.owner, self.config = pool, dsn, owner, config
        self.on_work, self.on_lost = on_work, on_lost
        self._held: dict[str, float] = {}  # pid -> monotonic time of the last renewal
        self._asked: set[str] = set()  # work queued or running, so repeated asks queue it once
        self._notices: dict[str, int] = {}  # pid -> count of computed notices seen
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lease-work")
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="leases", daemon=True)
        self._thread.start()
        self._listening.wait(timeout=10)

    # -- claiming ------------------------------------------------------------------------------

    def claim(self, pid: str) -> Claim:
        with self._cond:
            renewed = self._held.get(pid)
        if renewed is not None and time.monotonic() - renewed < self.config.ttl / 2:
            return Claim.HELD  # renewed recently enough that it cannot have expired meanwhile
        ttl = self.config.ttl
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO leases VALUES (%s, '', '-infinity') ON CONFLICT DO NOTHING", (pid,))
            row = conn.execute(
                "SELECT owner, expires_at > now() FROM leases WHERE process = %s FOR UPDATE SKIP LOCKED", (pid,)
            ).fetchone()
            if row is None:
                return Claim.OTHER  # another node is claiming it this very moment
            owner, live = row
            if owner != self.owner and live:
                self._forget(pid)
                return Claim.OTHER
            conn.execute(
                "UPDATE leases SET owner = %s, expires_at = now() + %s * interval '1 second' WHERE process = %s",
                (self.owner, ttl, pid),
            )
        with self._cond:
            self._held[pid] = time.monotonic()
        # Still ours (even if it lapsed, nobody else took it, so nobody computed): memory is current.
        return Claim.HELD if owner == self.owner else Claim.FRESH

    def release(self, pid: str) -> None:
        self._forget(pid)
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE leases SET owner = '', expires_at = '-infinity' WHERE process = %s AND owner = %s",
                (pid, self.owner),
            )

    def holder(self, pid: str) -> str | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT owner FROM leases WHERE process = %s AND expires_at > now()", (pid,)).fetchone()
        return row[0] if row and row[0] else None

    def _forget(self, pid: str) -> None:
        with self._cond:
            self._held.pop(pid, None)

    def _renew(self) -> None:
        with self._cond:
            held = list(self._held)
        if not held:
            return
        with self.pool.connection() as conn:
            kept = {
                r[0]
                for r in conn.execute(
                    "UPDATE leases SET expires_at = now() + %s * interval '1 second' "
                    "WHERE owner = %s AND process = ANY(%s) RETURNING process",
                    (self.config.ttl, self.owner, held),
                )
            }
        now = time.monotonic()
        with self._cond:
            for pid in held:
                if pid in kept and pid in self._held:
                    self._held[pid] = now
        for pid in set(held) - kept:
            self._forget(pid)
            self.on_lost(pid)  # taken over while this node was not looking: drop what it kept

    # -- notices -------------------------------------------------------------------------------

    def computed(self, pid: str) -> None:
        self._notify(COMPUTED, pid)

    def ask(self, pid: str) -> None:
        self._notify(WORK, pid)

    def _notify(self, channel: str, pid: str) -> None:
        with self.pool.connection() as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, pid))

    def wait_for(self, pid: str, done: Callable[[], bool], timeout: float) -> bool:
        """Until `done()` or `timeout`: re-checked on every computed notice for `pid` (and every
        POLL seconds, in case a notice was missed)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = self._notices.get(pid, 0)
            if done():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._cond:
                self._cond.wait_for(
                    lambda: self._notices.get(pid, 0) != seen,  # noqa: B023  (used now)
                    timeout=min(remaining, POLL),
                )

    def _listen(self) -> None:
        next_renewal = 0.0
        while not self._closed.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {WORK}")
                    conn.execute(f"LISTEN {COMPUTED}")
                    self._listening.set()
                    while not self._closed.is_set():
                        for notice in conn.notifies(timeout=POLL):
                            self._dispatch(notice.channel, notice.payload)
                        if time.monotonic() >= next_renewal:
                            self._renew()
                            next_renewal = time.monotonic() + self.config.ttl / 3
            except psycopg.Error:
                self._listening.set()
                self._closed.wait(POLL)  # the server went away: reconnect and listen again

    def _dispatch(self, channel: str, pid: str) -> None:
        if channel == COMPUTED:
            with self._cond:
                self._notices[pid] = self._notices.get(pid, 0) + 1
                self._cond.notify_all()
            return
        with self._cond:
            if pid not in self._held or pid in self._asked:
                return
            self._asked.add(pid)
        self._workers.submit(self._work, pid)

    def _work(self, pid: str) -> None:
        with self._cond:
            self._asked.discard(pid)
        try:
            self.on_work(pid)
        except Exception:  # noqa: BLE001  # the asking node times out and says so; this one serves on
            log.exception("computing %s for another node failed", pid)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)
        self._workers.shutdown(wait=True, cancel_futures=True)
        with self._cond:
            self._held.clear()
        try:
            with self.pool.connection() as conn:
                conn.execute("UPDATE leases SET owner = '', expires_at = '-infinity' WHERE owner = %s", (self.owner,))
        except psycopg.Error:
            pass  # the database is gone: the leases expire on their own
