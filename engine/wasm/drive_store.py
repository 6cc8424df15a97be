"""Where WeaveDrive's Arweave data comes from: a local directory, filled on demand from a gateway.

Layout of the directory (the same for operator-provided files and fetched ones): `data/<id>`,
`tx/<id>` (header JSON), `block/<height>` (header JSON). A fetched item is written there once and
never fetched again. Which items a process may read is decided as the legacy CU's WeaveDrive does
(`admissible`). Anything that cannot be had right now raises DataUnavailable: the message is then
not computed at all (retried later), so no node ever computes a different answer for lack of data.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aonode.engine.errors import DataUnavailable

ARWEAVE_ID = re.compile(r"[A-Za-z0-9_-]{43}")
HEIGHT = re.compile(r"\d{1,12}")
CHUNK = 1024 * 1024
TIMEOUT = 30.0
MODES = ("Assignments", "Individual", "Library")


def gateway_from_env() -> str | None:
    url = os.environ.get("AONODE_GATEWAY", "").strip()
    return url.rstrip("/") or None


@dataclass(frozen=True)
class DriveContext:
    """What admissibility looks at: the process's spawn tags, its module's tags, the message height."""

    process_tags: tuple[tuple[str, str], ...]
    module_tags: tuple[tuple[str, str], ...]
    block_height: int

    @staticmethod
    def values(tags: tuple[tuple[str, str], ...], name: str) -> list[str]:
        return [v for n, v in tags if n == name]


class DriveStore:
    """`test=True` admits everything (ao-loader's `mode: "test"`): for a local directory of fixtures."""

    def __init__(self, root: Path, gateway: str | None = None, *, test: bool = False) -> None:
        self.root = Path(root)
        self.gateway = gateway
        self.test = test
        self.fetches = 0  # requests sent to the gateway (tests check the cache with it)

    # ---- items --------------------------------------------------------------------------------------
    def local(self, kind: str, key: str) -> Path | None:
        if "/" in key or key in ("", ".", ".."):
            return None
        path = self.root / kind / key
        return path if path.is_file() else None

    def data_size(self, item: str) -> int:
        return self._ensure("data", item, f"/raw/{item}").stat().st_size

    def read(self, item: str, offset: int, length: int) -> bytes:
        path = self._ensure("data", item, f"/raw/{item}")
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def tx_header(self, item: str) -> bytes:
        return self._ensure("tx", item, f"/tx/{item}").read_bytes()

    def block_header(self, height: str) -> bytes:
        return self._ensure("block", height, f"/block/height/{height}").read_bytes()

    def _ensure(self, kind: str, key: str, route: str) -> Path:
        path = self.local(kind, key)
        if path is not None:
            return path
        pattern = HEIGHT if kind == "block" else ARWEAVE_ID
        if not pattern.fullmatch(key):
            raise DataUnavailable(f"WeaveDrive: no {kind} item {key!r} here, and it is not a valid id to fetch")
        if self.gateway is None:
            raise DataUnavailable(
                f"WeaveDrive: {kind}/{key} is not on this node and no gateway is configured (set AONODE_GATEWAY)"
            )
        return self._fetch(kind, key, route)

    def _fetch(self, kind: str, key: str, route: str) -> Path:
        """Stream the item into a temp file beside its place, then rename: a crash leaves no half item."""
        import httpx  # with the first fetch (engine/gateway.py says why)

        target = self.root / kind / key
        target.parent.mkdir(parents=True, exist_ok=True)
        self.fetches += 1
        try:
            with httpx.stream("GET", f"{self.gateway}{route}", timeout=TIMEOUT, follow_redirects=True) as resp:
                if resp.status_code != 200:
                    raise DataUnavailable(f"WeaveDrive: gateway answered {resp.status_code} for {route}")
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{key}.")
                try:
                    with os.fdopen(fd, "wb") as out:
                        for chunk in resp.iter_bytes(CHUNK):
                            out.write(chunk)
                    os.replace(tmp, target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
        except httpx.HTTPError as err:
            raise DataUnavailable(f"WeaveDrive: gateway {self.gateway} unreachable for {route}: {err}") from err
        return target

    # ---- admissibility ------------------------------------------------------------------------------
    def admissible(self, item: str, ctx: DriveContext) -> bool:
        """The legacy CU's rule: the process's On-Boot item always; otherwise only with the WeaveDrive
        extension on the module or process, and an attestation visible on the gateway."""
        if self.test:
            return True
        boot = DriveContext.values(ctx.process_tags, "On-Boot")
        if boot and boot[-1] == item:
            return True
        extensions = DriveContext.values(ctx.module_tags, "Extension") + DriveContext.values(
            ctx.process_tags, "Extension"
        )
        if "WeaveDrive" not in extensions:
            return False
        mode = (
            DriveContext.values(ctx.process_tags, "Availability-Type")
            or DriveContext.values(ctx.module_tags, "Availability-Type")
            or ["Assignments"]
        )[-1]
        if mode not in MODES:
            raise DataUnavailable(f"WeaveDrive: unsupported Availability-Type {mode!r}")
        attestors = [
            a
            for a in DriveContext.values(ctx.process_tags, "Scheduler")[-1:]
            + DriveContext.values(ctx.process_tags, "Attestor")
            if a
        ]
        if self._attested(attestors, ctx.block_height, {"Type": "Attestation", "Message": item, "Data-Protocol": "ao"}):
            return True
        if mode == "Individual":
            return self._attested(
                attestors, ctx.block_height, {"Type": "Available", "ID": item, "Data-Protocol": "WeaveDrive"}
            )
        if mode == "Library":
            raise DataUnavailable("WeaveDrive: Library attestations are not supported")
        return False

    def _attested(self, owners: list[str], height: int, tags: dict[str, str]) -> bool:
        if self.gateway is None or not owners:
            return False
        import httpx  # with the first query (engine/gateway.py says why)

        tag_list = ", ".join(f"{{name: {json.dumps(k)}, values: [{json.dumps(v)}]}}" for k, v in tags.items())
        query = (
            f"query {{ transactions(owners: {json.dumps(owners)}, block: {{min: 0, max: {height}}}, "
            f"tags: [{tag_list}]) {{ edges {{ node {{ tags {{ name value }} }} }} }} }}"
        )
        self.fetches += 1
        try:
            resp = httpx.post(f"{self.gateway}/graphql", json={"query": query}, timeout=TIMEOUT)
            resp.raise_for_status()
            edges = resp.json()["data"]["transactions"]["edges"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:
            raise DataUnavailable(f"WeaveDrive: attestation query to {self.gateway} failed: {err}") from err
        return len(edges) > 0
