"""`GET /metrics` on a real hypercorn, parsed by prometheus_client's own parser: the counters move
when a real AOS process computes, schedules, snapshots and dry-runs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aonode.server.observe import route_of
from tests.helpers.httpnode import HttpNode, http_node

pytestmark = pytest.mark.slow  # a served node with a real AOS process

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    with http_node(tmp_path_factory.mktemp("metrics-node")) as running:
        yield running


def scrape(c: httpx.Client) -> Samples:
    response = c.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_when_messages_compute(srv: HttpNode) -> None:
    with srv.client() as c:
        before = scrape(c)
        pid = c.post("/~process@1.0/schedule", json={"Tags": []}).json()["process"]
        for i in range(3):
            sent = c.post(
                f"/{pid}~process@1.0/schedule", json={"Tags": [{"name": "Action", "value": "Eval"}], "Data": f"X = {i}"}
            )
            assert sent.status_code == 200, sent.text
        assert c.get(f"/{pid}~process@1.0/now/at-slot").text == "3"
        assert c.get(f"/{pid}~process@1.0/snapshot").status_code == 200
        dry = c.post(
            "/dry-run",
            params={"process-id": pid},
            json={"Target": pid, "Owner": srv.node.address, "Tags": [{"name": "Action", "value": "Eval"}], "Data": "X"},
        )
        assert dry.status_code == 200, dry.text
        assert c.get(f"/{pid}~process@1.0/now/cache/nothing").status_code == 404
        after = scrape(c)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("aonode_slots_computed_total") >= 4  # the spawn and three messages
    assert moved("aonode_slot_compute_seconds_count") >= 4
    assert moved("aonode_slot_compute_seconds_sum") > 0
    assert moved("aonode_messages_scheduled_total") >= 4
    assert (
        1 <= moved("aonode_schedule_commits_total") <= moved("aonode_messages_scheduled_total")
    )  # sequential: ~1 each
    assert moved("aonode_snapshots_total") >= 1
    assert moved("aonode_snapshot_bytes_total") > 1000  # a zstd AOS memory is tens of KiB at least
    assert moved("aonode_dry_runs_total") == 1
    assert value(after, "aonode_live_instances") >= 1
    assert moved("aonode_http_requests_total", route="process/schedule", method="POST", status="200") == 4
    assert moved("aonode_http_requests_total", route="process/now", method="GET", status="200") == 1
    assert moved("aonode_http_requests_total", route="process/now", method="GET", status="404") == 1
    assert moved("aonode_http_requests_total", route="legacy/dry-run", method="POST", status="200") == 1
    assert moved("aonode_http_request_seconds_count", route="process/now") == 2
    assert ("aonode_pool_queue_depth", (("pool", "compute"),)) in after  # set, back to 0 when idle
    assert value(after, "aonode_pool_queue_depth", pool="compute") == 0


def test_routes_are_labelled_by_meaning_not_by_id() -> None:
    pid = "A" * 43
    assert route_of(f"/{pid}~process@1.0/now/cache/balances") == "process/now"
    assert route_of(f"/{pid}/compute/3") == "process/compute"
    assert route_of(f"/{pid}~process@1.0/now/~lua@5.3a&module=m/total") == "process/now/lua"
    assert route_of(f"/{pid}~process@1.0") == "process/page"
    assert route_of("/~meta@1.0/info") == "meta/info"
    assert route_of("/") == "root"
    assert route_of("/result/abc") == "legacy/result"
    assert route_of("/no/such/thing") == "other"


def test_a_request_is_counted_by_the_time_its_answer_arrives(srv: HttpNode) -> None:
    """Each answer, read in full on its own connection, is already in the next scrape (counted before its last
    byte), through the app and through the lean schedule front (a data item that does not parse)."""
    unknown = f"/{'a' * 43}~process@1.0/schedule"
    cases = (("GET", "/no/such/route", 404, "text/plain"), ("POST", unknown, 400, "application/octet-stream"))
    for method, path, status, content_type in cases:
        with srv.client() as c:
            labels = {"route": route_of(path), "method": method, "status": str(status)}
            counted = value(scrape(c), "aonode_http_requests_total", **labels)
            for n in range(1, 31):
                with srv.client() as fresh:
                    got = fresh.request(method, path, content=b"junk", headers={"content-type": content_type})
                    assert got.status_code == status, got.text
                assert value(scrape(c), "aonode_http_requests_total", **labels) == counted + n, (path, n)
