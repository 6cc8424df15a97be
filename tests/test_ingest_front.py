"""server/ingest_front.py: the schedule POSTs answered before the route table give the answers the full
app gives (status, JSON, signature and CORS headers, metrics), one chain across both, and everything
it does not take (a spawn, an unsigned JSON message) still reaches the app. Real hypercorn on loopback,
one real Node on SQLite behind two apps: the lean one and one built with AONODE_LEAN_INGEST=0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from aonode.engine import httpsig, metrics
from aonode.engine.answer_signature import SESSION_FIELD, verify_answer
from aonode.engine.crypto import Wallet
from aonode.engine.devices.scheduler import verify_chain
from aonode.engine.message import Message
from aonode.engine.node import Node
from aonode.modules import catalogue
from aonode.server import ingest_front
from aonode.server.app import create_app
from aonode.server.cli.client import build_message, build_spawn, new_anchor
from aonode.server.compose import make_node
from aonode.server.ingest_front import IngestFront
from aonode.server.ingest_http import parse_head
from tests.helpers.httpnode import serving

OCTET = {"content-type": "application/octet-stream"}
ANS104 = {"content-type": "application/ans104", "codec-device": "ans104@1.0"}
VARYING = {"date", "signature", "signature-input", "content-digest", "content-length", SESSION_FIELD}  # per answer/app


@pytest.fixture(scope="module")
def wallet() -> Wallet:
    return Wallet.generate("ed25519")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    made = make_node(tmp_path / "node", dev=False)
    yield made
    made.close()


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The statuses the front answered itself (it wraps IngestFront._answer)."""
    seen: list[int] = []
    answer = IngestFront._answer

    async def counted(self: IngestFront, send: object, status: int, body: bytes, extra: object) -> None:
        seen.append(status)
        await answer(self, send, status, body, extra)  # type: ignore[arg-type]

    monkeypatch.setattr(IngestFront, "_answer", counted)
    return seen


@pytest.fixture
def urls(node: Node, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(lean app, full app) on the same node."""
    lean = create_app(node, cron_every=0)
    monkeypatch.setenv("AONODE_LEAN_INGEST", "0")
    full = create_app(node, cron_every=0)
    monkeypatch.delenv("AONODE_LEAN_INGEST")
    assert _has_front(lean) and not _has_front(full)
    with serving(lean) as lean_url, serving(full) as full_url:
        yield lean_url, full_url


def _has_front(app: object) -> bool:
    return any(m.cls is IngestFront for m in app.user_middleware)  # type: ignore[attr-defined]


def _item(wallet: Wallet, pid: str, n: int) -> bytes:
    return build_message(wallet, process=pid, tags=[("Action", "Ping")], data=str(n), anchor=new_anchor()).raw


def _httpsig(wallet: Wallet, pid: str, n: int) -> tuple[dict[str, str], bytes]:
    request = httpsig.signed_message(wallet, {"action": b"Ping", "target": pid.encode(), "data": str(n).encode()})
    return dict(request.headers), request.body


def _posts(wallet: Wallet, pid: str, n: int) -> list[tuple[str, dict[str, str], bytes]]:
    """One fresh signed message on each route the front takes: (path, headers, body)."""
    headers, body = _httpsig(wallet, pid, n)
    return [
        ("/", OCTET, _item(wallet, pid, n)),
        (f"/~scheduler@1.0/schedule?target={pid}", ANS104, _item(wallet, pid, n)),
        (f"/{pid}~process@1.0/schedule", headers, body),
        (f"/{pid}~process@1.0/schedule", ANS104, _item(wallet, pid, n)),
    ]


def _shape(answer: httpx.Response, address: str) -> tuple[int, list[str], dict[str, str], list[str]]:
    """What must match between the two apps: status, JSON keys, the fixed headers, the varying ones' names."""
    assert verify_answer(answer.headers.multi_items(), answer.content) == address
    fixed = {k: v for k, v in answer.headers.items() if k not in VARYING}
    return answer.status_code, sorted(answer.json()), fixed, sorted(k for k in answer.headers if k in VARYING)


def _requests_counted(route: str, status: str) -> float:
    labels = {"route": route, "method": "POST", "status": status}
    return metrics.REGISTRY.get_sample_value("aonode_http_requests_total", labels) or 0.0


def test_schedule_posts_answer_as_the_full_app_does_in_one_chain(
    node: Node, urls: tuple[str, str], wallet: Wallet, answered: list[int]
) -> None:
    lean, full = urls
    module = catalogue.lookup("aos2_0_6")
    assert module is not None and module.id
    spawn = build_spawn(wallet, module=module.id, scheduler=node.address)
    spawned = httpx.post(f"{lean}/", content=spawn.raw, headers=OCTET, timeout=300)  # a spawn: down the app
    assert spawned.status_code == 200, spawned.text
    pid = spawned.json()["process"]
    counted = _requests_counted("process/schedule", "200")
    slots = []
    for n, ((path, headers, body), (_, headers_full, body_full)) in enumerate(
        zip(_posts(wallet, pid, 1), _posts(wallet, pid, 2), strict=True)
    ):
        got = httpx.post(lean + path, content=body, headers=headers)
        want = httpx.post(full + path, content=body_full, headers=headers_full)
        assert got.status_code == 200, (path, got.text)
        assert _shape(got, node.address) == _shape(want, node.address), path
        assert got.headers["access-control-allow-origin"] == "*"
        slots += [got.json()["slot"], want.json()["slot"]]
    assert sorted(slots) == list(range(1, 9)) and answered == [200] * 4  # the spawn went down the app
    assert _requests_counted("process/schedule", "200") == counted + 4  # two lean, two full
    schedule = node.router.scheduler.store.assignments(pid)
    assert [a.slot for a in schedule] == list(range(9)) and verify_chain(schedule)


def test_refusals_are_the_full_apps_json_errors_and_a_repeat_its_slot(
    node: Node, urls: tuple[str, str], wallet: Wallet, answered: list[int]
) -> None:
    lean, full = urls
    definition = Message.create(owner=node.address, tags=[("Type", "Process"), ("Module", "m")], data="front")
    node.router.scheduler.spawn(definition.id, definition)  # listed; its image never needed to schedule
    pid = definition.id
    twice = _item(wallet, pid, 7)
    assert httpx.post(f"{lean}/", content=twice, headers=OCTET).status_code == 200
    again = [httpx.post(f"{url}/", content=twice, headers=OCTET) for url in urls]  # idempotent: its one slot
    assert [(a.status_code, a.json()["slot"]) for a in again] == [(200, 1), (200, 1)]
    tampered = bytearray(_item(wallet, pid, 8))
    tampered[-1] ^= 1  # the data's last byte: the signature no longer covers it
    headers, body = _httpsig(wallet, pid, 9)
    unknown = "N" * 43
    cases = [
        ("/", OCTET, bytes(tampered)),  # a bad signature
        ("/", OCTET, b"not a data item"),
        (f"/~scheduler@1.0/schedule?target={unknown}", ANS104, _item(wallet, unknown, 10)),  # no such process
        (f"/{pid}~process@1.0/schedule", {**headers, "signature": headers["signature"][:-4] + "AAA="}, body),
        (f"/{pid}~process@1.0/schedule", {"content-type": "application/json"}, b'{"Data": "unsigned"}'),
        (f"/~scheduler@1.0/schedule?target={pid}", ANS104, _item(wallet, "M" * 43, 11)),  # another Target
    ]
    for path, headers, body in cases:
        got = httpx.post(lean + path, content=body, headers=headers)
        want = httpx.post(full + path, content=body, headers=headers)
        assert 400 <= got.status_code < 500, (path, got.text)
        assert (got.status_code, got.json()) == (want.status_code, want.json()), path
        assert verify_answer(got.headers.multi_items(), got.content) == node.address
    assert [a.slot for a in node.router.scheduler.store.assignments(pid)] == [0, 1]
    assert answered[:2] == [200, 200] and len(answered) == 2 + len(cases) - 1  # unsigned JSON: the app's


def test_an_assign_in_any_spelling_of_the_query_is_the_apps(node: Node, urls: tuple[str, str], wallet: Wallet) -> None:
    """`?assign=` is the legacy MU's assign request however the query spells it (`%61ssign`, no value):
    the front leaves it to the app, which reads the decoded query, instead of scheduling the body."""
    definition = Message.create(owner=node.address, tags=[("Type", "Process"), ("Module", "m")], data="assign")
    node.router.scheduler.spawn(definition.id, definition)
    pid = definition.id
    absent = "A" * 43
    for query in (f"%61ssign={absent}&process-id={pid}", f"assign&process-id={pid}"):
        answers = [httpx.post(f"{url}/?{query}", content=_item(wallet, pid, 12), headers=OCTET) for url in urls]
        assert 400 <= answers[0].status_code < 500, (query, answers[0].text)
        assert [(a.status_code, a.json()) for a in answers] == [(answers[1].status_code, answers[1].json())] * 2
    assert [a.slot for a in node.router.scheduler.store.assignments(pid)] == [0]  # nothing was scheduled


def test_the_remembered_query_facts_are_each_querys_own() -> None:
    """schedule_target's query facts, remembered for short queries, are each query's as parsed afresh:
    another process, `process=`, an `assign` in any spelling, a long query (parsed each time)."""
    a, b = "A" * 43, "B" * 43
    queries = [
        f"target={a}",
        f"target={b}",
        f"process={b}",
        f"t%61rget={a}",
        "target=short",
        f"assign={a}&process-id={b}",
        f"%61ssign&target={a}",
        f"pad={'x' * 200}&target={b}",
        f"target={a}&pad={'x' * 200}&%61ssign",
        "",
    ]
    for query in queries * 2:  # the second round reads what the first remembered
        raw = query.encode()
        fields = dict(parse_qsl(query, keep_blank_values=True))
        pid = fields.get("target") or fields.get("process") or ""
        assert ingest_front._query_facts(raw) == ((pid if len(pid) == 43 else None), "assign" in fields), query
        for path, mu in ((ingest_front.SCHEDULER_PATH, False), ("/", True)):
            head = b"POST %s?%s HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\n" % (path.encode(), raw)
            scope = parse_head(head, ("127.0.0.1", 1))
            assert scope is not None
            target = ingest_front.schedule_target(scope, mu, 100)
            if path == "/":
                assert (target is not None) == ("assign" not in fields), query
            else:
                assert (None if target is None else target.pid) == (pid if len(pid) == 43 else None), query
