"""aoconnect 0.0.98 in MODE 'mainnet' (unmodified npm package) against the real `aonode serve` CLI
without --dev: spawn through /push, Eval and Transfer through /<pid>~process@1.0/push, result,
results, dryrun, request() signed with httpsig, and plain reads. Every answer the node gave is signed
for its wallet (a session key the wallet vouches for): checked here with an independent RFC 9421 implementation (the `http-message-signatures`
package) and in JS with the one aoconnect itself depends on.
"""
from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.httpnode import peer_flow
from tests.helpers.rfc9421 import verified_signer

pytestmark = [pytest.mark.slow, pytest.mark.peers]  # drives a served node with aoconnect in node

REPO = Path(__file__).resolve().parents[1]
PEER = REPO / "tests" / "peers" / "aoconnect_mainnet.mjs"
VERIFIER = REPO / "tests" / "peers" / "httpsig_peer.mjs"
AOS_MODULE_ID = "ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s"
RECIPIENT = "R" * 43

Flow = tuple[dict[str, Any], httpx.Client]


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    with peer_flow(PEER, tmp_path_factory.mktemp("mainnet-node"), AOS_MODULE_ID) as seen:
        yield seen


def test_spawn_through_push_names_this_node_and_runs_aos(flow: Flow) -> None:
    seen, http = flow
    assert seen["scheduler"] == http.get("/~meta@1.0/info/address").text
    definition = http.get(f"/{seen['pid']}~process@1.0/init", headers={"accept": "application/json"}).json()
    tags = {t["name"]: t["value"] for t in definition["definition"]["Tags"]}
    assert tags["Module"] == AOS_MODULE_ID and tags["Scheduler"] == seen["scheduler"]
    assert tags["execution-device"] == "genesis-wasm@1.0"  # kept as aoconnect signed it; runs as the AOS stack
    assert definition["definition"]["Owner"] == seen["owner"]


def test_message_result_and_results_over_push(flow: Flow) -> None:
    seen, _ = flow
    assert (seen["evalSlot"], seen["transferSlot"]) == (1, 2)
    assert seen["evalError"] is None and "token ready" in seen["evalOutput"]
    [notice] = seen["transferMessages"]
    assert notice["Action"] == "Debit-Notice" and notice["Quantity"] == "250" and notice["Recipient"] == RECIPIENT
    assert seen["resultsCursor"] == "2"


def test_dryrun_reads_without_scheduling(flow: Flow) -> None:
    seen, http = flow
    [notice] = seen["dryrunMessages"]
    assert notice["Action"] == "Balance-Notice" and notice["Balance"] == "750"
    assert notice["Account"] == seen["owner"]


def test_httpsig_request_is_scheduled_and_computed(flow: Flow) -> None:
    seen, http = flow
    assert seen["pushedSlot"] == 3 and seen["slotText"] == "3"
    assert seen["marker"] == "httpsig"  # the httpsig-signed Eval ran and patched the cache
    assert seen["recipientBalance"] == "250"


def _independent_verify(captured: dict[str, Any]) -> str:
    """Verify with `http-message-signatures` (not our code); returns the signer's address."""
    response = httpx.Response(captured["status"], headers=dict(captured["headers"]),
                              content=base64.b64decode(captured["body_b64"]),
                              request=httpx.Request("GET", captured["url"]))
    return verified_signer(response)


def test_every_answer_is_signed_by_the_node(flow: Flow, tmp_path: Path) -> None:
    seen, _ = flow
    captured = seen["responses"]
    for name in ("address", "push", "balance"):
        assert _independent_verify(captured[name]) == seen["scheduler"], name
    items = [{"method": "GET", "url": c["url"], "status": c["status"], "headers": c["headers"],
              "body_b64": c["body_b64"]} for c in captured.values()]
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(items))
    out = subprocess.run(["node", str(VERIFIER), "answers", str(path)], check=True, cwd=REPO, timeout=60,
                         capture_output=True, text=True)
    assert json.loads(out.stdout) == [{"address": seen["scheduler"], "error": None}] * len(items)
    push_headers = dict(captured["push"]["headers"])
    assert push_headers["slot"] == "3" and "slot=integer" in push_headers["ao-types"]
