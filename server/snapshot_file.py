"""`GET /<pid>~process@1.0/snapshot`: the snapshot itself, to carry a process to another node or to
`aonode eval --snapshot-in` (the JSON summary {process, slot, memory-sha256} with Accept: application/json)."""

from __future__ import annotations

from starlette.responses import Response

from aonode.server.state import Server

MEDIA_TYPE = "application/octet-stream"


async def download(server: Server, pid: str) -> Response:
    info, blob = await server.compute_gate.run(server.node.snapshot_file, pid)
    return Response(
        blob,
        media_type=MEDIA_TYPE,
        headers={
            "content-disposition": f'attachment; filename="{pid}-{info["slot"]}.aosnap"',
            "x-process": pid,
            "x-slot": str(info["slot"]),
            "x-memory-sha256": str(info["memory-sha256"]),
        },
    )
