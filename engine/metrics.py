"""Every Prometheus metric the node exports, in one place, with one tiny hook per event.

The engine and the server call the hooks where things happen (a slot computed, a message
scheduled, an instance evicted, a snapshot stored, a request answered); `GET /metrics` renders
`REGISTRY`. A registry of our own (not prometheus_client's global one) so that nothing else a
process imports shows up, and so tests can read exactly these. Counters are per OS process, as
Prometheus expects of a scrape target; gauges are set by whoever owns the number.
"""

from __future__ import annotations

import functools

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

_SLOT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SLOTS_COMPUTED = Counter(
    "aonode_slots_computed", "Slots evaluated (messages run through a process's stack)", registry=REGISTRY
)
SLOT_SECONDS = Histogram(
    "aonode_slot_compute_seconds", "Wall time to compute one slot", buckets=_SLOT_BUCKETS, registry=REGISTRY
)
MESSAGES_SCHEDULED = Counter(
    "aonode_messages_scheduled", "Messages assigned a slot (spawns included)", registry=REGISTRY
)
SCHEDULE_COMMITS = Counter(
    "aonode_schedule_commits",
    "Durable commits of schedules (one group commit holds many: messages scheduled / this = messages per fsync)",
    registry=REGISTRY,
)
LIVE_INSTANCES = Gauge("aonode_live_instances", "Processes held live in memory (wasm instances)", registry=REGISTRY)
EVICTIONS = Counter("aonode_evictions", "Live processes snapshotted and dropped from memory", registry=REGISTRY)
SNAPSHOTS = Counter("aonode_snapshots", "Memory snapshots stored", registry=REGISTRY)
SNAPSHOT_BYTES = Counter("aonode_snapshot_bytes", "Compressed bytes of the memory snapshots stored", registry=REGISTRY)
DRY_RUNS = Counter("aonode_dry_runs", "Dry-runs evaluated", registry=REGISTRY)
LUA_READS = Counter(
    "aonode_lua_reads",
    "Dynamic (~lua@5.3a) reads, by whether Lua ran or memory answered",
    ["outcome"],
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "aonode_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=REGISTRY
)
HTTP_SECONDS = Histogram(
    "aonode_http_request_seconds", "Time to answer an HTTP request", ["route"], buckets=_HTTP_BUCKETS, registry=REGISTRY
)
POOL_DEPTH = Gauge(
    "aonode_pool_queue_depth", "Engine calls waiting or running in a server thread pool", ["pool"], registry=REGISTRY
)


def slot_computed(seconds: float) -> None:
    SLOTS_COMPUTED.inc()
    SLOT_SECONDS.observe(seconds)


def scheduled(count: int = 1) -> None:
    MESSAGES_SCHEDULED.inc(count)


def schedule_committed() -> None:
    SCHEDULE_COMMITS.inc()


def live_instances(count: int) -> None:
    LIVE_INSTANCES.set(count)


def evicted() -> None:
    EVICTIONS.inc()


def snapshot_stored(compressed_bytes: int) -> None:
    SNAPSHOTS.inc()
    SNAPSHOT_BYTES.inc(compressed_bytes)


def dry_run() -> None:
    DRY_RUNS.inc()


def lua_read(ran: bool) -> None:
    LUA_READS.labels("ran" if ran else "remembered").inc()


def pool_depth(pool: str, depth: int) -> None:
    _pool_gauge(pool).set(depth)


@functools.lru_cache(maxsize=64)
def _pool_gauge(pool: str) -> Gauge:
    """The pool's labelled gauge, looked up once: `labels()` costs more than `set()`, twice per ingested item."""
    return POOL_DEPTH.labels(pool)


def render() -> bytes:
    """The text exposition format, as `GET /metrics` answers it."""
    return generate_latest(REGISTRY)
