"""PostgresStore's schema as numbered migrations, applied in order at start under one advisory lock.

Why numbered and append-only: several nodes (possibly of different versions during a rolling
upgrade) start against one database. Each applies the migrations it knows that the database lacks,
one node at a time, and a node refuses to run on a schema newer than it knows rather than write rows
a newer node would misread.
"""

from __future__ import annotations

import psycopg

from aonode.engine.errors import SchemaTooNew

# pg_advisory_xact_lock key: "aonode" in ASCII, so other applications' keys are unlikely to collide.
MIGRATION_LOCK = 0x616F6E6F6465

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the records SQLiteStore keeps, with snapshots as chunked bytea so every node reaches them.
    (
        """CREATE TABLE processes (
            pid text PRIMARY KEY, definition bytea NOT NULL, seq bigserial NOT NULL)""",
        "CREATE TABLE messages (id text PRIMARY KEY, body bytea NOT NULL)",
        # One row per process, locked FOR UPDATE while a node appends to that process's schedule.
        "CREATE TABLE sequencers (process text PRIMARY KEY)",
        """CREATE TABLE assignments (
            process text NOT NULL, slot bigint NOT NULL, message_id text NOT NULL,
            timestamp bigint NOT NULL, block_height bigint NOT NULL, block_hash text,
            epoch bigint NOT NULL, hash_chain text NOT NULL, message bytea NOT NULL,
            PRIMARY KEY (process, slot), UNIQUE (process, message_id))""",
        """CREATE TABLE results (
            process text NOT NULL, slot bigint NOT NULL, message_id text NOT NULL,
            body bytea NOT NULL, PRIMARY KEY (process, slot))""",
        "CREATE INDEX results_by_message ON results (process, message_id)",
        """CREATE TABLE caches (
            process text NOT NULL, slot bigint NOT NULL, body bytea NOT NULL,
            PRIMARY KEY (process, slot))""",
        """CREATE TABLE snapshots (
            process text NOT NULL, slot bigint NOT NULL, sha256 text NOT NULL,
            size bigint NOT NULL, chunks integer NOT NULL, PRIMARY KEY (process, slot))""",
        """CREATE TABLE snapshot_chunks (
            process text NOT NULL, slot bigint NOT NULL, n integer NOT NULL, bytes bytea NOT NULL,
            PRIMARY KEY (process, slot, n),
            FOREIGN KEY (process, slot) REFERENCES snapshots ON DELETE CASCADE)""",
    ),
    # 2: compute leases (engine/leases.py): which node computes a process, until when (server clock).
    (
        """CREATE TABLE leases (
            process text PRIMARY KEY, owner text NOT NULL,
            expires_at timestamptz NOT NULL)""",
    ),
    # 3: the patched cache as per-slot changes between full copies (engine/store/cache_log.py).
    (
        """CREATE TABLE cache_changes (
            process text NOT NULL, slot bigint NOT NULL, body bytea NOT NULL,
            PRIMARY KEY (process, slot))""",
    ),
    # 4: the chunks of chunked snapshots (engine/wasm/chunked.py), each once by its sha256; a
    # chunked snapshot's manifest is its blob in snapshot_chunks.
    ("CREATE TABLE memory_chunks (hash text PRIMARY KEY, body bytea NOT NULL)",),
    # 5: what the nodes sharing this database agree on: the scheduler address (engine/store/pg_identity.py).
    ("CREATE TABLE node_identity (key text PRIMARY KEY, value text NOT NULL)",),
    # 6: a scheduled message's body only in its assignment row (rows.py, SCHEDULED_MESSAGE): a node that
    # knows only 1-5 would not find the new ones in `messages`, so it must not run on this database.
    (
        "COMMENT ON TABLE messages IS 'process definitions and messages stored on their own; a scheduled "
        "message is in assignments.message (since schema 6; older rows are in both)'",
    ),
)


def schema_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT to_regclass('aonode_schema') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute("SELECT max(version) FROM aonode_schema").fetchone()
    return int(found[0]) if found and found[0] is not None else 0


def migrate(conn: psycopg.Connection, migrations: tuple[tuple[str, ...], ...] = MIGRATIONS) -> int:
    """Bring the database to the newest version this code knows; the version it is at after."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS aonode_schema ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = schema_version(conn)
        if current > len(migrations):
            raise SchemaTooNew(
                f"the database schema is version {current}, newer than this aonode knows "
                f"({len(migrations)}): upgrade aonode, or point it at another database"
            )
        for version in range(current + 1, len(migrations) + 1):
            for statement in migrations[version - 1]:
                conn.execute(statement)  # type: ignore[arg-type]  # literal SQL from this module
            conn.execute("INSERT INTO aonode_schema (version) VALUES (%s)", (version,))
        return len(migrations)
