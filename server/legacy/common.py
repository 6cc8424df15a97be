"""What every legacy route shares: the two pools, query-parameter checks, the legacy result shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple, Unpack

from starlette.requests import Request
from starlette.responses import Response

from aonode.engine.answers import JSON, Result
from aonode.engine.errors import BadInput
from aonode.engine.message import is_id
from aonode.server.codec import JSON as JSON_TYPE, dump_json, parse_int
from aonode.server.state import server_of

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

RESULT_KEYS = ("Messages", "Spawns", "Output", "Error", "Assignments", "GasUsed")
EDGE_KEYS = ("Messages", "Spawns", "Output", "Error")
MAX_RESULTS_LIMIT = 1000


async def quick(request: Request, fn: Callable[[Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
    """Store reads and appends: never wait behind a long compute."""
    return await server_of(request).quick_gate.run(fn, *args)


async def compute(request: Request, fn: Callable[[Unpack[Ts]], T], *args: Unpack[Ts]) -> T:
    """Anything that may evaluate messages: bounded, 503 + Retry-After once full."""
    return await server_of(request).compute_gate.run(fn, *args)


def json_response(value: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dump_json(value), status_code=status, media_type=JSON_TYPE, headers=headers)


def process_id(request: Request) -> str:
    pid = request.query_params.get("process-id")
    if not pid:
        raise BadInput("add ?process-id=<process id>")
    return checked_id(pid, "process-id")


def checked_id(text: str, what: str) -> str:
    if not is_id(text):
        raise BadInput(f"{what} must be a 43-character base64url id, not {text[:60]!r}")
    return text


def int_param(request: Request, name: str, default: int | None = None) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    return parse_int(text, name, negative=True)


def limit_param(request: Request, default: int) -> int:
    limit = int_param(request, "limit", default)
    if limit is None or not 1 <= limit <= MAX_RESULTS_LIMIT:
        raise BadInput(f"limit must be between 1 and {MAX_RESULTS_LIMIT}")
    return limit


def legacy_result(result: Result, keys: tuple[str, ...] = RESULT_KEYS) -> dict[str, JSON]:
    """The legacy CU result: node-side keys (Patches, Pushed) dropped, Error only when there is one."""
    out = {key: result[key] for key in keys if key in result}
    out.setdefault("Messages", [])
    out.setdefault("Spawns", [])
    out.setdefault("Output", {"data": ""})
    if "Assignments" in keys:
        out.setdefault("Assignments", [])
    if out.get("Error") in (None, ""):
        out.pop("Error", None)
    return out
