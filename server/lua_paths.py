"""The route for dynamic reads (`/<pid>~process@1.0/now/~lua@5.3a&module=<id>/<function>`).

It sits before the HyperBEAM `&k=v` read route, which would otherwise take the segment's `&module=`
for a request parameter; the device-path handler parses it (`paths.ProcessPath.lua`).
"""

from __future__ import annotations

from starlette.convertors import register_url_convertor
from starlette.routing import BaseRoute, Route

from aonode.server import convertors
from aonode.server.device_paths import DevicePaths
from aonode.server.state import Server

register_url_convertor("luaread", convertors.TextConvertor(r"[^?]*/~lua@[^?]*"))


def routes(server: Server) -> list[BaseRoute]:
    return [Route("/{path:luaread}", DevicePaths(server).handle, methods=["GET"])]
