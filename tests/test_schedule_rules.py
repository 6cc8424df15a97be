"""Issue 10 item 9: a message is scheduled only on the process it targets, and unsigned assignments
are refused on a node without --dev (real hypercorn, real AOS image, signed ANS-104 items)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aonode.engine.ans104 import build_and_sign
from aonode.engine.crypto import Wallet
from aonode.engine.message import Message
from aonode.engine.store import open_store
from tests.helpers.httpnode import HttpNode, http_node
from tests.helpers.store_rows import assignment

pytestmark = pytest.mark.slow  # a served node per rule, signed items

OCTET = {"Content-Type": "application/octet-stream"}
SPAWN_TAGS = [("Module", "aos2_0_6"), ("Type", "Process"), ("Data-Protocol", "ao"), ("Variant", "ao.TN.1")]


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpNode, Wallet, str, str]]:
    user = Wallet.generate("ed25519")
    with http_node(Path(tmp_path_factory.mktemp("rules")), dev=False) as srv, srv.client() as c:
        pids = []
        for n in range(2):
            item = build_and_sign(user, data="", tags=[*SPAWN_TAGS, ("Name", f"p{n}")])
            r = c.post("/~process@1.0/schedule", content=item.raw, headers=OCTET)
            assert r.status_code == 200, r.text
            pids.append(r.json()["process"])
        yield srv, user, pids[0], pids[1]


@pytest.mark.parametrize("verb", ["schedule", "push"])
def test_a_message_for_a_is_refused_on_b(two: tuple[HttpNode, Wallet, str, str], verb: str) -> None:
    srv, user, a, b = two
    item = build_and_sign(user, data="Hit = true", tags=[("Action", "Eval")], target=a)
    with srv.client() as c:
        r = c.post(f"/{b}~process@1.0/{verb}", content=item.raw, headers=OCTET)
        assert r.status_code == 400 and a in r.json()["error"], r.text
        r = c.post(f"/~scheduler@1.0/schedule?target={b}", content=item.raw, headers=OCTET)
        assert r.status_code == 400, r.text
        assert c.get(f"/{b}~process@1.0/slot").json()["current"] == 0  # nothing scheduled on B
        r = c.post(f"/{a}~process@1.0/{verb}", content=item.raw, headers=OCTET)
        assert r.status_code == 200, r.text  # on its own process it is fine


def test_an_unsigned_assignment_of_someone_elses_message_is_401(two: tuple[HttpNode, Wallet, str, str]) -> None:
    """B's owner signed neither this message nor the request: the assignment is refused."""
    srv, _user, a, b = two
    item = build_and_sign(Wallet.generate("ed25519"), data="return 1", tags=[("Action", "Eval")], target=a)
    with srv.client() as c:
        assert c.post("/", content=item.raw, headers=OCTET).status_code == 200
        r = c.post(f"/?assign={item.id}&process-id={b}")
        assert r.status_code == 401 and "assign" in r.json()["error"], r.text
        assert c.get(f"/{b}~process@1.0/slot").json()["current"] == 0


def test_assigning_a_spawn_whose_listing_a_crash_cut_off_finds_it(tmp_path: Path) -> None:
    """Its slot 0 is durable but the crash came before the process was listed: the node holds the
    message, so `?assign=` schedules it (it was a 404, "no message ... on this node")."""
    orphan = Message.create(owner="o" * 43, tags=[("Type", "Process"), ("Module", "aos2_0_6")], data="")
    store = open_store(str(tmp_path))
    store.append_assignment(assignment(orphan.id, 0, orphan))  # what the spawn stored before the crash
    store.close()
    with http_node(tmp_path, dev=True) as srv, srv.client() as c:
        b = c.post("/~process@1.0/schedule", json={"Tags": [{"name": "Module", "value": "aos2_0_6"}]}).json()
        r = c.post(f"/?assign={orphan.id}&process-id={b['process']}")
        assert r.status_code == 200 and r.json()["slot"] == 1, r.text
        assert c.get(f"/{b['process']}~process@1.0/slot").json()["current"] == 1


def test_dev_json_naming_another_target_is_refused(tmp_path: Path) -> None:
    with http_node(tmp_path, dev=True) as srv, srv.client() as c:
        spawn = {"Tags": [{"name": "Module", "value": "aos2_0_6"}]}
        a, b = (c.post("/~process@1.0/schedule", json={**spawn, "Anchor": n}).json()["process"] for n in "ab")
        r = c.post(f"/{b}~process@1.0/schedule", json={"Target": a, "Action": "Eval", "Data": "x = 1"})
        assert r.status_code == 400, r.text
