"""What the nodes sharing one PostgreSQL database must agree on, recorded in it by the first node.

Why: nodes on one database are one node to the outside. The scheduler signs assignments and is the
`Authority` of spawned processes and the owner of messages pushed between them, so a pushed message is
the same bytes whichever node computes the slot that sends it only if every node signs with one wallet.
And every node must find every snapshot: one keeping them in a bucket and another in the database would
each miss the other's. The first node to start records both; a node started with another wallet or
another snapshot place refuses to start (StartupRefused) instead of diverging.
"""

from __future__ import annotations

from psycopg_pool import ConnectionPool

from aonode.engine.errors import StartupRefused

IN_DATABASE = "postgresql"  # the snapshots' place when no bucket is given


def _claim(pool: ConnectionPool, key: str, value: str) -> str:
    """The value recorded under `key`: `value` if none was yet."""
    with pool.connection() as conn:
        conn.execute("INSERT INTO node_identity VALUES (%s, %s) ON CONFLICT DO NOTHING", (key, value))
        row = conn.execute("SELECT value FROM node_identity WHERE key = %s", (key,)).fetchone()
    return row[0] if row else value


def claim_identity(pool: ConnectionPool, address: str, snapshots: str | None) -> None:
    """Record this node's scheduler address and snapshot place (`s3://...`, None: the database) if
    none are yet; refuse if others are."""
    recorded = _claim(pool, "scheduler", address)
    if recorded != address:
        raise StartupRefused(
            f"this database's scheduler is {recorded} (the wallet its first node started with) but this node's "
            f"wallet is {address}: nodes sharing one --store must share one --wallet (docs/scale-out.md)"
        )
    place = snapshots or IN_DATABASE
    recorded = _claim(pool, "snapshots", place)
    if recorded != place:
        raise StartupRefused(
            f"this database's snapshots are in {recorded} but this node would keep them in {place}: nodes "
            f"sharing one --store must share one --snapshots (docs/scale-out.md)"
        )
