"""WeaveDrive through a gateway, on a real Node with the real AOS image and a loopback HTTP gateway.

`On-Boot=<txid>` boots a process from data the node fetches once and caches; drive files seek and read
at offsets; admissibility follows the legacy CU (the boot item always; others need the WeaveDrive
extension and an attestation the gateway's GraphQL knows); a gateway that is down or lacks the item
leaves the message uncomputed (DataUnavailable, HTTP 503) and the node serving.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aonode.engine.errors import DataUnavailable
from tests.helpers.httpnode import http_node
from tests.helpers.loopback import Reply, Request, loopback
from tests.helpers.nodeutil import OWNER, definition, eval_msg, make_node, output

pytestmark = pytest.mark.slow  # real AOS processes on a node

BOOT = "BOOTxBOOTxBOOTxBOOTxBOOTxBOOTxBOOTxBOOTxBOO"
LIB = "LIBxLIBxLIBxLIBxLIBxLIBxLIBxLIBxLIBxLIBxLIB"
LATE = "LATExLATExLATExLATExLATExLATExLATExLATExLAT"
BOOT_CODE = b"Booted = 'from the gateway'\nreturn 'boot done'"


class Gateway:
    """Serves /raw/<id> and /graphql (attestations of LIB by OWNER); records every request; can fail."""

    def __init__(self, items: dict[str, bytes]) -> None:
        self.items = dict(items)
        self.headers = {"/block/height/77": b'{"height":77,"timestamp":1700000000}',
                        f"/tx/{BOOT}": b'{"id":"' + BOOT.encode() + b'","tags":[]}'}
        self.hits: list[str] = []
        self.down = False

    def answer(self, request: Request) -> Reply:
        self.hits.append(request.path)
        if request.method == "POST":
            query = json.loads(request.body)["query"]
            attested = LIB in query and OWNER in query and "Attestation" in query
            edges = [{"node": {"tags": [{"name": "Type", "value": "Attestation"}]}}] if attested else []
            return Reply(200, json.dumps({"data": {"transactions": {"edges": edges}}}).encode())
        if self.down:
            return Reply(502, b"bad gateway")
        item = request.path.removeprefix("/raw/")
        body = self.items.get(item) if request.path.startswith("/raw/") else self.headers.get(request.path)
        return Reply(200, body) if body is not None else Reply(404, b"not found")

    def count(self, path: str) -> int:
        return self.hits.count(path)


@pytest.fixture
def gateway(monkeypatch) -> Iterator[Gateway]:
    gw = Gateway({BOOT: BOOT_CODE, LIB: b"0123456789abcdef" * 4096, LATE: b"Late = 'finally'"})
    with loopback(gw.answer) as url:
        monkeypatch.setenv("AONODE_GATEWAY", url)
        yield gw


def spawn(node, *tags: tuple[str, str]) -> str:
    return node.spawn(definition(*tags))["process"]


def run(node, pid: str, code: str) -> str:
    node.schedule(pid, eval_msg(pid, code))
    return output(node.now(pid))


def test_on_boot_boots_from_the_gateway_once(gateway, tmp_path: Path) -> None:
    data = tmp_path / "node"
    node = make_node(data)
    first = spawn(node, ("On-Boot", BOOT))
    assert run(node, first, "return Booted") == "from the gateway"
    second = spawn(node, ("On-Boot", BOOT))
    assert run(node, second, "return Booted") == "from the gateway"
    assert gateway.count(f"/raw/{BOOT}") == 1  # the second boot read the node's copy
    assert (data / "weavedrive" / "data" / BOOT).read_bytes() == BOOT_CODE
    node.store.close()  # a crash: the restarted node replays from its store, still without the gateway
    restarted = make_node(data)
    assert run(restarted, first, "return Booted .. '!'") == "from the gateway!"
    assert gateway.count(f"/raw/{BOOT}") == 1
    restarted.close()


def test_drive_files_seek_and_read_at_offsets(gateway, tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    pid = spawn(node, ("On-Boot", BOOT))
    code = (f"local f = io.open('/data/{BOOT}'); local size = f:seek('end'); local a = f:seek('set', 9); "
            "local s = f:read(4); local c = f:seek('cur', 3); local t = f:read(5); "
            "return size .. '|' .. a .. '|' .. s .. '|' .. c .. '|' .. t")
    assert run(node, pid, code) == f"{len(BOOT_CODE)}|9|'fro|16|he ga"
    headers = f"return io.open('/block/77'):read(12) .. ' ' .. io.open('/tx/{BOOT}'):read(7)"
    assert run(node, pid, headers) == '{"height":77 {"id":"'
    assert run(node, pid, "return io.open('/block/77'):read(12)") == '{"height":77'  # now an FS node
    assert gateway.count("/block/height/77") == 1 and gateway.count(f"/tx/{BOOT}") == 1
    node.close()


def test_admissibility_follows_the_legacy_cu(gateway, tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    plain = spawn(node, ("On-Boot", BOOT))
    assert run(node, plain, f"return tostring(io.open('/data/{LIB}'))") == "nil"  # no WeaveDrive extension
    assert gateway.count(f"/raw/{LIB}") == 0
    drive = spawn(node, ("Extension", "WeaveDrive"), ("Scheduler", OWNER))
    code = (f"local f = io.open('/data/{LIB}'); local n = f:seek('end'); f:seek('set', 65530); "
            "return n .. ':' .. f:read(6)")  # AOS's fread reports what it asked for
    assert run(node, drive, code) == f"{16 * 4096}:abcdef"  # attested: a 64 KiB item, read near its end
    assert run(node, drive, f"return tostring(io.open('/data/{LATE}'))") == "nil"  # no attestation
    node.close()


def test_gateway_failure_leaves_the_message_pending(gateway, tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    healthy = spawn(node, ("On-Boot", BOOT))
    assert run(node, healthy, "return Booted") == "from the gateway"
    gateway.down = True
    pid = spawn(node, ("On-Boot", LATE))
    with pytest.raises(DataUnavailable) as info:
        node.now(pid)
    assert info.value.status == 503
    assert run(node, healthy, "return 1 + 1") == "2"  # the node keeps serving
    with pytest.raises(DataUnavailable):
        node.now(pid)  # still pending, not an error result
    gateway.down = False
    assert run(node, pid, "return Late") == "finally"
    missing = spawn(node, ("On-Boot", "MISSxMISSxMISSxMISSxMISSxMISSxMISSxMISSxMIS"))
    with pytest.raises(DataUnavailable, match="404"):
        node.now(missing)
    node.close()


def test_served_node_answers_503_until_the_data_arrives(gateway, tmp_path: Path) -> None:
    gateway.down = True
    with http_node(tmp_path / "node") as srv, srv.client() as c:
        tags = [{"name": "Module", "value": "aos2_0_6"}, {"name": "On-Boot", "value": LATE}]
        pid = c.post("/~process@1.0/schedule", json={"Tags": tags}).json()["process"]
        pending = c.get(f"/{pid}~process@1.0/now", headers={"accept": "application/json"})
        assert pending.status_code == 503 and "gateway answered 502" in pending.json()["error"]
        assert c.get("/~meta@1.0/info", headers={"accept": "application/json"}).status_code == 200
        gateway.down = False
        c.post(f"/{pid}~process@1.0/schedule", json={"Tags": [{"name": "Action", "value": "Eval"}],
                                                    "Data": "return Late"})
        done = c.get(f"/{pid}~process@1.0/now", headers={"accept": "application/json"})
        assert done.status_code == 200 and done.json()["results"]["Output"]["data"] == "finally"
