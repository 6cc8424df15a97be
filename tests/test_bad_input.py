"""Hostile input against a real hypercorn: every answer is 4xx JSON, never a 500, and the node lives on.

Issue 10 item 10: huge numbers in from/to/slot (OverflowError in SQLite), deep JSON nesting
(RecursionError) and lone UTF-16 surrogates (UnicodeEncodeError when the message is hashed). Then a
bounded fuzz run of a few thousand requests mixing all of these with random paths and headers.
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.httpnode import HttpNode, http_node

pytestmark = pytest.mark.slow  # thousands of hostile requests against a served node

HUGE = ("99999999999999999999", "-9999999999999999999999", "9" * 5000, "1e400", "²", "0x10")
DEEP = (b"[" * 100_000, b'{"a":' * 50_000, b'{"Tags":' + b"[" * 100_000)
SURROGATES = (
    b'{"Action":"\\ud800"}',
    b'{"\\udfff":"x"}',
    b'{"Tags":[{"name":"A","value":"\\ud800"}]}',
    b'{"Tags":[{"name":"\\udc00","value":"v"}]}',
    b'{"Tags":[],"Data":"\\udc00"}',
    b'{"Tags":[],"Anchor":"\\ud9ff"}',
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpNode, str]]:
    with http_node(tmp_path_factory.mktemp("bad-input"), dev=True) as srv, srv.client() as c:
        r = c.post("/~process@1.0/schedule", json={"Tags": [{"name": "Module", "value": "aos2_0_6"}]})
        assert r.status_code == 200, r.text
        yield srv, r.json()["process"]


def _is_json_4xx(r: httpx.Response) -> bool:
    return 400 <= r.status_code < 500 and "error" in r.json()


@pytest.mark.parametrize("number", HUGE)
def test_huge_or_odd_numbers_in_queries_are_400(node: tuple[HttpNode, str], number: str) -> None:
    srv, pid = node
    urls = [f"/{pid}~process@1.0/schedule?from={number}", f"/{pid}~process@1.0/schedule?to={number}",
            f"/results/{pid}?from={number}", f"/results/{pid}?to={number}", f"/{pid}?from={number}",
            f"/{pid}?to={number}", f"/~scheduler@1.0/schedule?target={pid}&from={number}",
            f"/{pid}~process@1.0/compute?slot={number}", f"/{pid}~process@1.0/compute/{number}",
            f"/{pid}~process@1.0/compute/results={number}", f"/{pid}~process@1.0/now/cache/{number}"]
    with srv.client() as c:
        for url in urls:
            r = c.get(url)
            assert r.status_code in (400, 404) and "error" in r.json(), (url, r.status_code, r.text[:200])


@pytest.mark.parametrize("body", DEEP, ids=["lists", "objects", "tags"])
@pytest.mark.parametrize("where", ["/graphql", "/dry-run?process-id={pid}", "/~process@1.0/schedule",
                                   "/{pid}~process@1.0/schedule", "/push", "/{pid}~process@1.0/push"])
def test_deep_nesting_is_400(node: tuple[HttpNode, str], where: str, body: bytes) -> None:
    srv, pid = node
    with srv.client() as c:
        r = c.post(where.format(pid=pid), content=body, headers={"content-type": "application/json"})
    assert _is_json_4xx(r), (r.status_code, r.text[:200])
    assert "nested" in r.json()["error"]


@pytest.mark.parametrize("body", SURROGATES)
@pytest.mark.parametrize("where", ["/dry-run?process-id={pid}", "/~process@1.0/schedule",
                                   "/{pid}~process@1.0/schedule", "/{pid}~process@1.0/push"])
def test_lone_surrogates_are_400(node: tuple[HttpNode, str], where: str, body: bytes) -> None:
    srv, pid = node
    with srv.client() as c:
        r = c.post(where.format(pid=pid), content=body, headers={"content-type": "application/json"})
    assert _is_json_4xx(r), (r.status_code, r.text[:200])
    assert "surrogate" in r.json()["error"]


def test_an_escaped_backslash_u_is_ordinary_text(node: tuple[HttpNode, str]) -> None:
    """`\\\\ud800` in JSON is the six characters `\\ud800`, not a surrogate: accepted."""
    srv, pid = node
    with srv.client() as c:
        r = c.post(f"/{pid}~process@1.0/schedule", content=b'{"Action":"Note","Data":"\\\\ud800"}',
                   headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


# -- the bounded fuzz run --------------------------------------------------------------------------

FUZZ_REQUESTS = 3000
FUZZ_SECONDS = 120.0  # a hard bound on the run; on a quiet machine it takes ~15 s
METHODS = ("GET", "GET", "GET", "POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH")
SEGMENTS = ("~process@1.0", "~meta@1.0", "~scheduler@1.0", "~relay@1.0", "~json@1.0", "serialize~json@1.0",
            "now", "compute", "schedule", "slot", "snapshot", "init", "push", "cache", "results", "data",
            "outbox", "info", "at-slot", "results=1", "as=execution", "&Action=Eval", "..", ".", "%00", "%ff",
            "%ED%A0%80", "\u00e9", "\u2603", "a" * 300, "dry-run", "graphql", "result", "state", "cron",
            "timestamp", "1", "0", "-1", "1.5")
QUERY_KEYS = ("from", "to", "slot", "limit", "process-id", "target", "sort", "accept", "relay-path",
              "relay-method", "assign", "id", "cursor")
HEADERS = ("content-type", "accept", "codec-device", "signature", "signature-input", "content-digest",
           "ao-types", "content-length-x", "body-keys", "inline-body-key", "relay-path")
CONTENT_TYPES = ("application/json", "application/octet-stream", "application/ans104", "text/plain",
                 "multipart/form-data; boundary=x", "multipart/form-data", "", "application/json; charset=latin-1")


def _number(rng: random.Random) -> str:
    return rng.choice([*HUGE, " 7", str(rng.randint(-10, 10)), str(rng.randint(0, 2**70)), "", "NaN", "true"])


def _json_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(8 if depth < 4 else 4)
    if kind == 0:
        return rng.choice(["Eval", "Transfer", "\ud800", "\udfff", "x" * rng.randint(0, 500), "", "é☃"])
    if kind == 1:
        return rng.choice([0, -1, 2**70, 1e308, -1e-308, 99999999999999999999])
    if kind == 2:
        return rng.choice([None, True, False])
    if kind == 3:
        return _number(rng)
    if kind in (4, 5):
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["Tags", "Data", "Anchor", "Target", "Action", "Module", "name", "value", "Id", "Owner",
            "From", "query", "variables", "\ud800", "Cron-Frequency", "Compute-Limit", "On-Boot"]
    return {rng.choice(keys): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _body(rng: random.Random, pid: str) -> bytes:
    kind = rng.randrange(10)
    if kind == 0:
        return rng.choice(DEEP)[: rng.randint(1, 200_000)]
    if kind == 1:
        return rng.choice(SURROGATES)
    if kind == 2:
        return rng.randbytes(rng.randint(0, 2000))
    if kind == 3:  # an ANS-104-looking header with random lengths
        return rng.choice([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\xff\xff"]) + rng.randbytes(rng.randint(0, 1200))
    if kind == 4:
        return b""
    if kind == 5:
        tags = [{"name": rng.choice(["Action", "Module", "Target", "\ud800"]), "value": _number(rng)}
                for _ in range(rng.randint(0, 4))]
        return json.dumps({"Target": rng.choice([pid, "x", ""]), "Tags": tags, "Data": _json_value(rng)}).encode()
    return json.dumps(_json_value(rng)).encode()


def _url(rng: random.Random, pid: str) -> str:
    head = rng.choice(["", pid, pid + "~process@1.0", "~process@1.0", "x" * 43, "result", "results",
                       "dry-run", "graphql", "state", "cron", "~meta@1.0", "~scheduler@1.0", "~relay@1.0"])
    parts = [head] + [rng.choice(SEGMENTS) for _ in range(rng.randint(0, 5))]
    if rng.random() < 0.2:
        parts.insert(rng.randint(0, len(parts)), rng.choice([pid, f"{pid}~process@1.0"]))
    query = "&".join(f"{rng.choice(QUERY_KEYS)}={rng.choice([_number(rng), pid, '/~meta@1.0/info', '%ED%A0%80'])}"
                     for _ in range(rng.randint(0, 3)))
    return "/" + "/".join(parts).lstrip("/") + (f"?{query}" if query else "")


def _headers(rng: random.Random) -> dict[str, bytes]:
    headers = {"content-type": rng.choice(CONTENT_TYPES).encode()}
    for _ in range(rng.randint(0, 3)):
        headers[rng.choice(HEADERS)] = rng.choice(["", "sig1=:AAAA:", 'sig1=("@path");keyid="x"', "ans104@1.0",
                                                   "application/aos-2", "sha-256=:x:",
                                                   _number(rng).strip()]).encode("utf-8")
    return headers


@pytest.mark.slow
def test_fuzzed_requests_never_give_5xx_and_the_node_lives(node: tuple[HttpNode, str]) -> None:
    srv, pid = node
    rng = random.Random(20261129)
    failures: list[str] = []
    deadline = time.monotonic() + FUZZ_SECONDS
    sent = 0
    with srv.client() as c:
        for _ in range(FUZZ_REQUESTS):
            if time.monotonic() > deadline:
                break
            method, url = rng.choice(METHODS), _url(rng, pid)
            body = _body(rng, pid) if method in ("POST", "PUT", "PATCH") else b""
            r = c.request(method, url, content=body or None, headers=_headers(rng))
            sent += 1
            if r.status_code >= 500 and r.status_code != 503:
                failures.append(f"{method} {url[:120]} -> {r.status_code} {r.text[:200]}")
        assert sent >= 1000, f"only {sent} requests in {FUZZ_SECONDS} s"
        assert not failures, "\n".join(failures[:20])
        assert c.get("/~meta@1.0/info").status_code == 200
        assert c.get(f"/{pid}~process@1.0/now/at-slot").status_code == 200
