"""Keeps the Node's chain tip current: the gateway's `/info` height and block, polled in the background.

A network scheduler stamps each assignment with the current Arweave block; this node does the same
with what its gateway (`AONODE_GATEWAY`) last reported. An unreachable gateway only means the node
keeps the height it knew (the engine's ChainTip never goes back), so serving never waits on it.
"""

from __future__ import annotations

import logging
import threading

from aonode.server.api import NodeAPI

log = logging.getLogger("aonode.server")
POLL_SECONDS = 60.0
TIMEOUT_SECONDS = 5.0


def gateway_tip(gateway: str, timeout: float = TIMEOUT_SECONDS) -> tuple[int, str | None]:
    """(height, current block id) from an Arweave gateway's `/info`."""
    import httpx  # with the first poll (engine/gateway.py says why)

    doc = httpx.get(f"{gateway}/info", timeout=timeout).raise_for_status().json()
    height = doc.get("height") if isinstance(doc, dict) else None
    if not isinstance(height, int) or height < 0:
        raise ValueError(f"{gateway}/info has no block height")
    current = doc.get("current")
    return height, current if isinstance(current, str) else None


def watch_chain(node: NodeAPI, gateway: str, every: float = POLL_SECONDS, first_after: float = 0.0) -> threading.Event:
    """Poll `gateway` after `first_after` seconds, then every `every` seconds, on a daemon thread; set the
    event to stop. (A node's start delays the first poll: its HTTPS client costs ~0.1-0.4 s of the GIL,
    loading the CA bundle, which a cold start's first answer should not wait for.)"""
    stop = threading.Event()

    def run() -> None:
        warned = False
        stop.wait(first_after)
        import httpx  # after the wait: imported at once, it took the GIL from a cold start's demo spawn

        while not stop.is_set():
            try:
                node.observe_block(*gateway_tip(gateway))
                warned = False
            except (httpx.HTTPError, ValueError) as err:
                if not warned:
                    log.info("block height: %s unreachable (%s); new messages keep the last known height", gateway, err)
                    warned = True
            stop.wait(every)

    threading.Thread(target=run, name="aonode-chain-tip", daemon=True).start()
    return stop
