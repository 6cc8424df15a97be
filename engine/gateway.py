"""Reading an Arweave item by id from a gateway (`AONODE_GATEWAY`): module images, Lua modules.

Why in the engine: the Node itself reads items (WeaveDrive data, `~lua@5.3a` modules) as well as the
image catalogue in modules/, which builds on this. A gateway that cannot deliver raises
`SourceUnavailable` (a ModuleError: 400), naming the URL.
"""

from __future__ import annotations

import io
import os
from contextlib import AbstractContextManager

from aonode.engine.errors import ModuleError
from aonode.engine.progress import PROGRESS, Task

DEFAULT_GATEWAY = "https://arweave.net"
CHUNK = 64 * 1024


class SourceUnavailable(ModuleError):
    """This source could not deliver the bytes; another one may."""


def progress(total: int | None, desc: str) -> AbstractContextManager[Task]:
    """A progress task: on the dashboard, and on the CLI's terminal (a bar) or log (plain lines)."""
    return PROGRESS.task(f"fetching {desc}", total=total, unit="B")


def gateway_url() -> str:
    return os.environ.get("AONODE_GATEWAY", DEFAULT_GATEWAY).rstrip("/")


def fetch_gateway(item_id: str, max_size: int, timeout: float = 30.0) -> bytes:
    """`GET <gateway>/raw/<id>`, streamed with a progress bar and cut off past `max_size`."""
    import httpx  # with the first fetch: httpx brings click, pygments and rich (~0.1 s of a node's start)

    url = f"{gateway_url()}/raw/{item_id}"
    out = io.BytesIO()
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as resp:
            if resp.status_code != 200:
                raise SourceUnavailable(f"{url}: HTTP {resp.status_code}")
            total = resp.headers.get("content-length")
            with progress(int(total) if total and total.isdigit() else None, item_id) as bar:
                for chunk in resp.iter_bytes(CHUNK):
                    out.write(chunk)
                    bar.advance(len(chunk))
                    if out.tell() > max_size:
                        raise SourceUnavailable(f"{url}: larger than the catalogued {max_size} bytes")
    except httpx.HTTPError as err:
        raise SourceUnavailable(f"{url}: {type(err).__name__}: {err}") from err
    return out.getvalue()
