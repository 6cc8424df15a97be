"""aoconnect 0.0.98 (legacy mode, unmodified npm package) against a real aonode server.

The node runs without --dev, so everything aoconnect sends must be a valid signed data item; the
JS peer (tests/peers/aoconnect_flow.mjs) spawns a real AOS process, Evals a token, transfers, and
reads result/results/dryrun and the patched balances; here we assert on what it saw and on the
node's own store.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aonode.engine.node import Node
from aonode.server.app import create_app
from aonode.server.legacy_api import legacy_routes
from tests.httpnode import serving

REPO = Path(__file__).resolve().parents[1]
PEER = REPO / "tests" / "peers" / "aoconnect_flow.mjs"
AOS_MODULE_ID = "ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s"
RECIPIENT = "R" * 43


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Node, str]]:
    node_bin = shutil.which("node")
    assert node_bin, "node is required for the interop tests (the CI installs it with the JS peers)"
    node = Node(tmp_path_factory.mktemp("aoconnect-node"), dev=False)
    try:
        with serving(create_app(node, dev=False, with_legacy=False, extra_routes=legacy_routes())) as url:
            done = subprocess.run([node_bin, str(PEER), url, AOS_MODULE_ID], cwd=REPO, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            yield json.loads(done.stdout.strip().splitlines()[-1]), node, url
    finally:
        node.close()


def test_spawn_goes_to_this_node_as_scheduler_with_the_aoconnect_wallet(flow: tuple[dict, Node, str]) -> None:
    seen, node, _ = flow
    assert seen["scheduler"] == node.address
    definition = node.store.get_process(seen["pid"])
    assert definition is not None and definition.signature is not None
    assert definition.owner == seen["owner"]
    assert definition.tag("Module") == AOS_MODULE_ID and definition.tag("Scheduler") == node.address
    assert definition.tag("SDK") == "aoconnect"


def test_eval_from_the_owner_ran(flow: tuple[dict, Node, str]) -> None:
    seen, _, _ = flow
    assert seen["evalError"] is None
    assert "token ready" in seen["evalOutput"]


def test_transfer_result_carries_the_reply_to_the_sender(flow: tuple[dict, Node, str]) -> None:
    seen, _, _ = flow
    assert len(seen["transferMessages"]) == 1  # the balances patch was taken out of the outbox
    notice = seen["transferMessages"][0]
    assert notice["Action"] == "Debit-Notice" and notice["Quantity"] == "250"
    assert notice["Recipient"] == RECIPIENT
    assert seen["transferTargets"] == [seen["owner"]]


def test_results_list_every_evaluated_slot(flow: tuple[dict, Node, str]) -> None:
    seen, node, _ = flow
    assert seen["resultsCursors"] == ["0", "1", "2"]
    assert "token ready" in seen["resultsOutputs"][1]
    assert seen["newestCursor"] == "2"
    assert node.slot(seen["pid"])["current"] == 2


def test_dryrun_reads_the_balance_without_scheduling(flow: tuple[dict, Node, str]) -> None:
    seen, node, _ = flow
    assert seen["dryrunError"] is None
    reply = seen["dryrunMessages"][0]
    assert reply["Action"] == "Balance-Notice" and reply["Balance"] == "750"
    assert seen["newestCursorAfterDryrun"] == "2"
    assert node.store.last_result_slot(seen["pid"]) == 2


def test_patched_balances_are_readable_with_a_get(flow: tuple[dict, Node, str]) -> None:
    seen, _, url = flow
    assert seen["recipientBalance"] == "250"
    assert sorted(seen["balances"].values()) == ["250", "750"]
    owner_balance = httpx.get(f"{url}/{seen['pid']}~process@1.0/now/cache/balances/{seen['owner']}", timeout=60)
    assert owner_balance.text == "750"
