"""A loopback Arweave gateway for tests: a real hypercorn serving `/raw/<id>` from a dict."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.helpers.httpnode import serving


@contextmanager
def loopback_gateway(files: Mapping[str, str | bytes]) -> Iterator[tuple[str, list[str]]]:
    """Yields (base URL, ids asked so far); unknown ids are 404, as on arweave.net."""
    asked: list[str] = []

    async def up(request: Request) -> Response:
        return Response("up")

    async def raw(request: Request) -> Response:
        tx = request.path_params["id"]
        asked.append(tx)
        if tx in files:
            return Response(files[tx], media_type="application/octet-stream")
        return Response("not found", status_code=404)

    with serving(Starlette(routes=[Route("/raw/{id}", raw), Route("/~meta@1.0/info", up)])) as url:
        yield url, asked
