"""aoconnect 0.0.98 (legacy mode, unmodified npm package) against a real aonode server.

The node is the real `aonode serve` CLI without --dev, so everything aoconnect sends must be a
valid signed data item; the JS peer (tests/peers/aoconnect_flow.mjs) spawns a real AOS process,
Evals a token, transfers, and reads result/results/dryrun and the patched balances; here we assert
on what it saw and, over HTTP, on what the node recorded.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.httpnode import peer_flow

pytestmark = [pytest.mark.slow, pytest.mark.peers]  # drives the node with aoconnect in node

REPO = Path(__file__).resolve().parents[1]
PEER = REPO / "tests" / "peers" / "aoconnect_flow.mjs"
AOS_MODULE_ID = "ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s"
RECIPIENT = "R" * 43


Flow = tuple[dict[str, Any], httpx.Client]


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    with peer_flow(PEER, tmp_path_factory.mktemp("aoconnect-node"), AOS_MODULE_ID) as seen:
        yield seen


def _current_slot(http: httpx.Client, pid: str) -> int:
    return http.get(f"/{pid}~process@1.0/slot", headers={"accept": "application/json"}).json()["current"]


def test_spawn_goes_to_this_node_as_scheduler_with_the_aoconnect_wallet(flow: Flow) -> None:
    seen, http = flow
    assert seen["scheduler"] == http.get("/~meta@1.0/info/address").text
    info = http.get(f"/processes/{seen['pid']}").json()["process"]
    assert info["owner"]["address"] == seen["owner"] and info["signature"]
    tags = {t["name"]: t["value"] for t in info["tags"]}
    assert tags["Module"] == AOS_MODULE_ID and tags["Scheduler"] == seen["scheduler"]
    assert tags["SDK"] == "aoconnect" and tags["Type"] == "Process"


def test_eval_from_the_owner_ran(flow: Flow) -> None:
    seen, _ = flow
    assert seen["evalError"] is None
    assert "token ready" in seen["evalOutput"]


def test_transfer_result_carries_the_reply_to_the_sender(flow: Flow) -> None:
    seen, _ = flow
    assert len(seen["transferMessages"]) == 1  # the balances patch was taken out of the outbox
    notice = seen["transferMessages"][0]
    assert notice["Action"] == "Debit-Notice" and notice["Quantity"] == "250"
    assert notice["Recipient"] == RECIPIENT
    assert seen["transferTargets"] == [seen["owner"]]


def test_results_list_every_evaluated_slot(flow: Flow) -> None:
    seen, http = flow
    assert seen["resultsCursors"] == ["0", "1", "2"]
    assert "token ready" in seen["resultsOutputs"][1]
    assert seen["newestCursor"] == "2"
    assert _current_slot(http, seen["pid"]) == 2


def test_dryrun_reads_the_balance_without_scheduling(flow: Flow) -> None:
    seen, http = flow
    assert seen["dryrunError"] is None
    reply = seen["dryrunMessages"][0]
    assert reply["Action"] == "Balance-Notice" and reply["Balance"] == "750"
    assert seen["newestCursorAfterDryrun"] == "2"
    assert _current_slot(http, seen["pid"]) == 2


def test_patched_balances_are_readable_with_a_get(flow: Flow) -> None:
    seen, http = flow
    assert seen["recipientBalance"] == "250"
    assert sorted(seen["balances"].values()) == ["250", "750"]
    assert http.get(f"/{seen['pid']}~process@1.0/now/cache/balances/{seen['owner']}").text == "750"
