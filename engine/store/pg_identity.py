"""The scheduler address a shared PostgreSQL database belongs to: nodes on one database are one node.

Why: the scheduler signs assignments and is the `Authority` of spawned processes and the owner of
messages pushed between them, so a pushed message is the same bytes whichever node computes the slot
that sends it only if every node signs with one wallet. The first node to start records its address;
a node started with another wallet refuses to start (StartupRefused) instead of signing as a stranger.
"""
from __future__ import annotations

from psycopg_pool import ConnectionPool

from aonode.engine.errors import StartupRefused


def claim_scheduler(pool: ConnectionPool, address: str) -> None:
    """Record `address` as the database's scheduler if none is yet; refuse if another one is."""
    with pool.connection() as conn:
        conn.execute("INSERT INTO node_identity VALUES ('scheduler', %s) ON CONFLICT DO NOTHING", (address,))
        row = conn.execute("SELECT value FROM node_identity WHERE key = 'scheduler'").fetchone()
    recorded = row[0] if row else address
    if recorded != address:
        raise StartupRefused(
            f"this database's scheduler is {recorded} (the wallet its first node started with) but this node's "
            f"wallet is {address}: nodes sharing one --store must share one --wallet (docs/scale-out.md)")
