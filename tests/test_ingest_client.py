"""bench/ingest_client.py, the ingest bench's load generator, against server/ingest_http.py on loopback:
it sends every request once and counts an answer as good only when it is a 200 whose JSON body holds
an integer `slot`; anything else (another status, no slot, a connection closed before the answer) is a
failure the bench raises on. A `connection: close` answer makes it reconnect and go on."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from aonode.server import ingest_http
from aonode.server.signing import Scope

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import ingest_client  # noqa: E402


def _requests(bodies: list[bytes]) -> list[bytes]:
    return [ingest_client.encode_post("127.0.0.1", "/p", {"content-type": "application/json"}, b) for b in bodies]


def _outcome(answer: ingest_http.Handler, bodies: list[bytes], connections: int = 3) -> ingest_client.Outcome:
    """`bodies` posted by the client to a lean server that answers with `answer`."""

    async def failed(err: BaseException) -> ingest_http.Answer:
        raise AssertionError(f"nothing is tunnelled here: {err}")

    async def scenario() -> ingest_client.Outcome:
        server = ingest_http.Server(answer, ("127.0.0.1", 9), failed, 1 << 20)
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(lambda: ingest_http.Connection(server), "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            return await ingest_client.post_all("127.0.0.1", port, _requests(bodies), connections)
        finally:
            listener.close()
            for conn in list(server.connections):
                conn.close()

    return asyncio.run(scenario())


def _json(status: int, value: object, extra: list[tuple[bytes, bytes]] | None = None) -> ingest_http.Answer:
    body = json.dumps(value).encode()
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    return ingest_http.Answer(status, headers + (extra or []), body)


def test_every_request_is_sent_once_and_each_slot_is_read_from_its_answer() -> None:
    async def echo_slot(scope: Scope, body: bytes) -> ingest_http.Answer:
        return _json(200, {"slot": json.loads(body)["n"], "id": "x"})

    bodies = [json.dumps({"n": n}).encode() for n in range(50)]
    out = _outcome(echo_slot, bodies)
    assert out.failures == []
    assert sorted(out.slots) == list(range(50))
    assert len(out.latencies) == 50 and out.seconds > 0


def test_answers_without_a_slot_or_not_200_are_failures() -> None:
    async def mixed(scope: Scope, body: bytes) -> ingest_http.Answer:
        n = json.loads(body)["n"]
        if n == 1:
            return _json(400, {"error": "bad item"})
        if n == 2:
            return _json(200, {"slot": "7"})  # not an integer
        if n == 3:
            return _json(200, {"id": "no slot"})
        return _json(200, {"slot": n})

    out = _outcome(mixed, [json.dumps({"n": n}).encode() for n in range(6)], connections=1)
    assert sorted(out.slots) == [0, 4, 5]
    assert len(out.failures) == 3
    assert any(f.startswith("400: ") and "bad item" in f for f in out.failures)
    assert sum("without an integer slot" in f for f in out.failures) == 2


def test_a_closing_answer_makes_the_client_reconnect() -> None:
    async def closing(scope: Scope, body: bytes) -> ingest_http.Answer:
        n = json.loads(body)["n"]
        return _json(200, {"slot": n}, [(b"connection", b"close")] if n % 2 else [])

    seen: list[int] = []

    async def counted(scope: Scope, body: bytes) -> ingest_http.Answer:
        seen.append(json.loads(body)["n"])
        return await closing(scope, body)

    out = _outcome(counted, [json.dumps({"n": n}).encode() for n in range(10)], connections=2)
    assert out.failures == []
    assert sorted(out.slots) == sorted(seen) == list(range(10))


def test_a_connection_closed_before_its_answer_is_a_failure() -> None:
    async def dies(scope: Scope, body: bytes) -> ingest_http.Answer:
        raise RuntimeError("no answer")  # ingest_http closes the connection without answering

    out = _outcome(dies, [b'{"n": 0}', b'{"n": 1}'], connections=1)
    assert out.slots == []
    assert out.failures and "closed the connection before answering" in out.failures[0]


def test_take_answer_waits_for_the_whole_body() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n" + b'{"slot":1}'
    buffer = bytearray(raw[:-3])
    assert ingest_client.take_answer(buffer) is None
    buffer += raw[-3:]
    answer = ingest_client.take_answer(buffer)
    assert answer == ingest_client.Answer(200, True, b'{"slot":1}') and not buffer
