"""Whole signed answers to state reads kept by (process, slot, path, representation) (server/read_cache.py):
a repeated read is the same signed answer, still verified by an independent RFC 9421 verifier; a new
slot answers anew and signs anew; the cache is bounded."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from aonode.engine.node import Node
from aonode.server import paths
from aonode.server.app import create_app
from aonode.server.compose import make_node
from aonode.server.read_cache import Answer, AnswerCache, CachedReads
from tests.helpers.httpnode import serving
from tests.helpers.rfc9421 import verified_signer

BOOT = "Supply = '1000'\nSend({ device = 'patch@1.0', cache = { supply = Supply } })"


@dataclass
class Served:
    node: Node
    app: Starlette
    http: httpx.Client
    pid: str

    def cache(self) -> AnswerCache:
        layer = self.app.middleware_stack
        while not isinstance(layer, CachedReads):
            layer = layer.app  # type: ignore[union-attr]
        return layer.cache

    def read(self, rest: str, **headers: str) -> httpx.Response:
        resp = self.http.get(f"/{self.pid}~process@1.0{rest}", headers=headers)
        assert verified_signer(resp) == self.node.address
        return resp


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    node = make_node(tmp_path_factory.mktemp("read-cache"), dev=True)  # an RSA wallet, as served nodes have
    try:
        app = create_app(node, dev=True, cron_every=0)
        with serving(app) as url, httpx.Client(base_url=url, timeout=120) as http:
            r = http.post("/~process@1.0/schedule", json={"Tags": [{"name": "Module", "value": "aos2_0_6"},
                                                                   {"name": "On-Boot", "value": "Data"}],
                                                          "Data": BOOT})
            assert r.status_code == 200, r.text
            yield Served(node, app, http, r.json()["process"])
    finally:
        node.close()


def test_a_repeated_read_is_the_kept_signed_answer(served: Served) -> None:
    served.read("/now/cache/supply")  # the first `now` computes the spawn: answered, not kept
    first = served.read("/now/cache/supply")
    assert first.text == "1000" and first.headers["access-control-allow-origin"] == "*"
    hits = served.cache().hits
    for spelling in ("/now/cache/supply", "/now/cache/supply/", "/now//cache/supply"):
        again = served.read(spelling)
        assert again.content == first.content and again.headers["signature"] == first.headers["signature"]
    plain = served.http.get(f"/{served.pid}/now/cache/supply")  # the implicit device: the same answer
    assert plain.headers["signature"] == first.headers["signature"]
    assert served.cache().hits == hits + 4


def test_json_is_its_own_signed_answer(served: Served) -> None:
    text = served.read("/now/cache/supply")
    as_json = served.read("/now/cache/supply", accept="application/json")
    assert as_json.json() == "1000" and as_json.headers["content-type"] == "application/json"
    assert as_json.headers["signature"] != text.headers["signature"]
    assert served.read("/now/cache/supply~json@1.0").content == as_json.content


def test_a_missing_key_is_a_kept_signed_404(served: Served) -> None:
    missing = served.read("/now/cache/nothing-here")
    assert missing.status_code == 404 and "nothing-here" in missing.json()["error"]
    assert served.read("/now/cache/nothing-here").headers["signature"] == missing.headers["signature"]


def test_an_answer_about_one_connection_is_not_kept(served: Served) -> None:
    served.read("/now/cache/supply")  # computed: `now` has nothing pending, so its answers are kept
    url = f"/{served.pid}~process@1.0/now/cache/not-here-either"
    with_body = served.http.request("GET", url, content=b"left unread")
    assert with_body.status_code == 404 and with_body.headers.get("connection") == "close"
    plain = served.read("/now/cache/not-here-either")
    assert plain.status_code == 404 and "connection" not in plain.headers


def test_a_new_slot_answers_anew_and_signs_anew(served: Served) -> None:
    before = served.read("/now/cache/supply")
    slot = served.read("/compute/at-slot").json()
    r = served.http.post(f"/{served.pid}~process@1.0/schedule", json={
        "Action": "Eval", "data": "Supply = '999'\nSend({ device = 'patch@1.0', cache = { supply = Supply } })"})
    assert r.status_code == 200, r.text
    after = served.read("/now/cache/supply")  # `now` computes the new slot first
    assert after.text == "999" and after.headers["signature"] != before.headers["signature"]
    assert served.read("/now/cache/supply").headers["signature"] == after.headers["signature"]
    old = served.read(f"/compute/{slot}/cache/supply")  # the old slot's state still answers as it did
    assert old.text == "1000"
    assert served.read(f"/compute/cache/supply?slot={slot}").headers["signature"] != after.headers["signature"]


def test_concurrent_first_reads_at_a_new_slot_share_one_signature(served: Served) -> None:
    """Eight reads at once, in one event loop (a fresh app on the same node, through ASGI): the first
    signs, the others wait for its answer (without that, each would sign: RSA-PSS signatures differ)."""
    r = served.http.post(f"/{served.pid}~process@1.0/schedule", json={"Action": "Eval", "data": "return 1"})
    assert r.status_code == 200, r.text
    served.read("/now/cache/nothing-here")  # computes the new slot without reading `supply` there

    async def eight_at_once() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(served.node, dev=True, cron_every=0))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            url = f"/{served.pid}~process@1.0/now/cache/supply"
            return list(await asyncio.gather(*(client.get(url) for _ in range(8))))

    answers = asyncio.run(eight_at_once())
    assert all(a.status_code == 200 and verified_signer(a) == served.node.address for a in answers)
    assert {a.headers["signature"] for a in answers} == {answers[0].headers["signature"]}


def test_distinct_reads_at_once_are_each_signed_over_their_own_digest(served: Served) -> None:
    """Distinct answers made at once are each signed over their own content-digest: an RFC 9421
    verifier binds every kept answer's body."""
    r = served.http.post(f"/{served.pid}~process@1.0/schedule", json={"Action": "Eval", "data": "return 2"})
    assert r.status_code == 200, r.text
    served.read("/now/cache/supply")  # computes the new slot

    async def eight_keys_at_once() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(served.node, dev=True, cron_every=0))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return list(await asyncio.gather(*(client.get(f"/{served.pid}~process@1.0/now/cache/missing-{n}")
                                               for n in range(8))))

    answers = asyncio.run(eight_keys_at_once())
    assert all(a.status_code == 404 and verified_signer(a) == served.node.address for a in answers)


def test_an_unknown_process_is_not_kept(served: Served) -> None:
    entries = len(served.cache())
    r = served.http.get(f"/{'U' * 43}~process@1.0/now/cache/supply")
    assert r.status_code == 404 and len(served.cache()) == entries


def _answer(size: int) -> Answer:
    return Answer(200, [(b"content-type", b"text/plain")], b"x" * size)


def _key(n: int) -> tuple[paths.ProcessPath, int, bool]:
    return (paths.ProcessPath("P" * 43, "now", keys=("cache", str(n))), n, False)


def test_the_cache_is_bounded_by_bytes_and_count() -> None:
    one = _answer(1000).size
    cache = AnswerCache(max_bytes=3 * one, max_entries=10)
    for n in range(5):
        cache.put(_key(n), _answer(1000))
    assert len(cache) == 3 and cache.bytes == 3 * one
    assert cache.get(_key(0)) is None and cache.get(_key(4)) is not None
    cache.get(_key(2))  # used: now the newest
    cache.put(_key(5), _answer(1000))
    assert cache.get(_key(2)) is not None and cache.get(_key(3)) is None
    cache.put(_key(6), _answer(4 * one))  # bigger than the whole cache: never kept
    assert cache.get(_key(6)) is None and cache.bytes == 3 * one
    counted = AnswerCache(max_bytes=10**9, max_entries=2)
    for n in range(3):
        counted.put(_key(n), _answer(10))
    assert len(counted) == 2 and counted.get(_key(0)) is None
