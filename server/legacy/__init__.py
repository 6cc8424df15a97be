"""The legacynet HTTP API (MU, CU, SU and the two gateway GraphQL queries) that aoconnect calls.

Why it exists: existing AO clients (`@permaweb/aoconnect` in legacy mode, front ends built on it)
speak the legacy unit APIs, not HyperBEAM paths. These routes translate those calls onto the same
Node the HyperBEAM routes use (through server/api.py's NodeAPI only), so one node serves both and
they see the same schedule and state. app.py mounts them before the HyperBEAM catch-all; handlers
find the Node and the pools through `server_of(request)`, and engine errors raised here become
JSON `{"error": ...}` answers through the app's handlers.

Shapes follow what aoconnect 0.0.98 and ao-scheduler-utils read (node_modules/@permaweb/*/dist):
- MU `POST /` (mu.py): a signed data item → `{id, message, timestamp, slot, process}`.
- CU (cu.py) `/result/<id>?process-id=`, `/results/<pid>`, `/dry-run?process-id=`, `/state/<pid>`.
- SU (su.py) `/timestamp`, `/<pid>` (assignments page), `/<msg-id>?process-id=`, `/processes/<pid>`.
- Gateway `POST /graphql` (gateway.py): transactions by id (module and process tags) and the node's
  own `Scheduler-Location` record. Not a GraphQL engine: the query is recognised by its variables.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from aonode.server import convertors
from aonode.server.legacy import cu, gateway, mu, su

assert convertors  # registers the `aoid` path convertor used below


def routes() -> list[BaseRoute]:
    """The legacy API routes; they must come before the HyperBEAM catch-all route."""
    return [
        Route("/", mu.post_item, methods=["POST"]),
        Route("/result/{id}", cu.get_result, methods=["GET"]),
        Route("/results/{pid}", cu.get_results, methods=["GET"]),
        Route("/dry-run", cu.post_dry_run, methods=["POST"]),
        Route("/state/{pid}", cu.get_state, methods=["GET"]),
        Route("/timestamp", su.get_timestamp, methods=["GET"]),
        Route("/processes/{pid}", su.get_process, methods=["GET"]),
        Route("/graphql", gateway.post_graphql, methods=["POST"]),
        Route("/{id:aoid}", su.get_scheduled, methods=["GET"]),
    ]
