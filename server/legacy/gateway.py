"""Gateway `POST /graphql`: the two queries aoconnect and ao-scheduler-utils make of a gateway.

Transactions by id (a catalogue module's tags, or a process definition's) and this node's own
`Scheduler-Location` record. Not a GraphQL engine: the query is recognised by its variables.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from aonode.engine.answers import JSON
from aonode.engine.errors import BadInput, NotFound
from aonode.engine.message import is_id
from aonode.modules.catalogue import lookup
from aonode.server.api import NodeAPI
from aonode.server.codec import parse_json_object, read_body
from aonode.server.legacy.common import json_response, quick
from aonode.server.state import server_of

SCHEDULER_TTL_MS = 24 * 3600 * 1000
MODULE_ENCODING = "JSON-1"
MODULE_MEMORY_LIMIT = "4-gb"  # the wasm64 device's default (engine/devices/wasm64.py)
MODULE_COMPUTE_LIMIT = "9000000000000"


def module_tags(ref: str) -> list[tuple[str, str]] | None:
    """The tags a module transaction carries on Arweave, for a catalogue image (by id or name)."""
    entry = lookup(ref)
    if entry is None:
        return None
    return [
        ("Data-Protocol", "ao"),
        ("Variant", "ao.TN.1"),
        ("Type", "Module"),
        ("Module-Format", entry.format),
        ("Input-Encoding", MODULE_ENCODING),
        ("Output-Encoding", MODULE_ENCODING),
        ("Memory-Limit", MODULE_MEMORY_LIMIT),
        ("Compute-Limit", MODULE_COMPUTE_LIMIT),
        ("Content-Type", "application/wasm"),
        ("Name", entry.name),
    ]


def _gql_node(ident: str, owner: str | None, tags: list[tuple[str, str]], **extra: JSON) -> dict[str, JSON]:
    return {
        "id": ident,
        "owner": {"address": owner, "key": None},
        "tags": [{"name": n, "value": v} for n, v in tags],
        "block": None,
        **extra,
    }


def _transaction(node: NodeAPI, ident: JSON) -> dict[str, JSON] | None:
    if not isinstance(ident, str):
        return None
    tags = module_tags(ident)
    if tags is not None:
        return _gql_node(ident, None, tags)
    if not is_id(ident):
        return None
    try:
        definition = node.definition(ident)
    except NotFound:
        return None
    return _gql_node(
        ident,
        definition.owner,
        list(definition.tags),
        anchor=definition.anchor,
        signature=definition.signature,
        recipient=definition.target or "",
    )


def scheduler_location(address: str, url: str) -> dict[str, JSON]:
    tags = [
        ("Data-Protocol", "ao"),
        ("Variant", "ao.TN.1"),
        ("Type", "Scheduler-Location"),
        ("Url", url),
        ("Time-To-Live", str(SCHEDULER_TTL_MS)),
    ]
    return _gql_node(address, address, tags)


def _connection(nodes: list[dict[str, JSON]]) -> dict[str, JSON]:
    return {
        "data": {
            "transactions": {
                "pageInfo": {"hasNextPage": False},
                "edges": [{"cursor": n["id"], "node": n} for n in nodes],
            }
        }
    }


def answer_graphql(node: NodeAPI, query: str, variables: dict[str, JSON], base_url: str) -> dict[str, JSON]:
    """Transactions by id, or this node's Scheduler-Location; anything else: no transactions."""
    ids = variables.get("transactionIds") or variables.get("ids")
    if isinstance(ids, str):
        ids = [ids]
    if isinstance(ids, list):
        return _connection([t for t in (_transaction(node, i) for i in ids) if t is not None])
    owners = variables.get("owners") or variables.get("owner")
    owners = [owners] if isinstance(owners, str) else owners if isinstance(owners, list) else []
    if "Scheduler-Location" in query and node.address in owners:
        return _connection([scheduler_location(node.address, base_url)])
    return _connection([])


async def post_graphql(request: Request) -> Response:
    server = server_of(request)
    body = parse_json_object(await read_body(request, server.limits.max_body))
    query, variables = body.get("query"), body.get("variables") or {}
    if not isinstance(query, str) or not isinstance(variables, dict):
        raise BadInput("send {query: string, variables: object}")
    base_url = str(request.base_url).rstrip("/")
    return json_response(await quick(request, answer_graphql, server.node, query, variables, base_url))
