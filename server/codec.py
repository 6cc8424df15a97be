"""Bytes on the wire <-> values: answer encoding, reading a body under a size limit, and decoding it.

Answers follow HyperBEAM's read convention: a scalar leaf is sent as its raw value so a front end can
`fetch(...).then(r => r.text())`; tables are JSON; a client that asks for JSON always gets JSON.
Request bodies are either a signed ANS-104 data item (octet-stream) or an unsigned JSON message in
the legacy AO shape or as a flat map of tags; deciding whether unsigned is acceptable is app.py's job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request

from aonode.engine.ans104 import DataItem
from aonode.engine.answers import JSON as JSONValue
from aonode.engine.errors import AONodeError, BadInput, TooLarge
from aonode.engine.message import Message, b64url

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
DATA_ITEM_TYPES = frozenset({"application/octet-stream", "application/ans104"})
MAX_INT = 2**53 - 1  # slots, timestamps and cursors in a query: JS-safe, and far inside SQLite's int64
_INT_TEXT = re.compile(r"-?[0-9]{1,20}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # `\ud800`..`\udfff` in JSON text

SIGNING_HINT = (
    "this node accepts only signed messages: send an ANS-104 data item signed with your wallet as "
    "the body with Content-Type: application/octet-stream (aoconnect's createDataItemSigner does "
    "this), or start the node with --dev to accept unsigned JSON attributed to the node wallet"
)


@dataclass(frozen=True)
class Encoded:
    body: bytes
    media_type: str


def wants_json(accept: str | None) -> bool:
    """True when the Accept header names JSON explicitly (not just `*/*`)."""
    return accept is not None and "application/json" in accept.lower()


def encode(value: object, *, as_json: bool = False) -> Encoded:
    """A scalar leaf as raw text unless JSON was asked for; tables, lists and null always as JSON."""
    if not as_json and isinstance(value, (str, int, float, bool)):
        return Encoded(_raw(value).encode("utf-8"), TEXT)
    return Encoded(dump_json(value), JSON)


def dump_json(value: object) -> bytes:
    """Compact JSON, non-ASCII as UTF-8, bytes as base64url: `json.dumps` with these settings, by one
    encoder made once (json.dumps makes a JSONEncoder per call when any setting is not its default: a
    fifth of encoding an answer's body, which every ingest answer and most node answers are)."""
    return _ENCODER.encode(value).encode("utf-8")


def error_body(message: str) -> bytes:
    return dump_json({"error": message})


def _raw(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _jsonable(value: object) -> object:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b64url(bytes(value))
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_data_item(content_type: str | None) -> bool:
    return media_type(content_type) in DATA_ITEM_TYPES


def parse_int(text: str, what: str, *, negative: bool = False) -> int:
    """An integer from a query or path (at most 20 digits, |value| <= MAX_INT), or BadInput naming `what`."""
    text = text.strip()
    kind = "an integer" if negative else "a non-negative integer"
    if not _INT_TEXT.fullmatch(text) or (text.startswith("-") and not negative):
        raise BadInput(f"{what} must be {kind}, got {text!r:.40}")
    value = int(text)
    if abs(value) > MAX_INT:
        raise BadInput(f"{what} must be {kind} of at most {MAX_INT}, got {text!r:.40}")
    return value


def parse_json_object(body: bytes) -> dict[str, JSONValue]:
    """The body as a JSON object, or BadInput saying what is wrong with it (not JSON, nested too
    deep to parse, or text with a lone UTF-16 surrogate, which no UTF-8 store or signer can hold)."""
    if not body.strip():
        raise BadInput(
            "empty body: send a JSON message ({Target, Tags: [{name, value}], Data}) or a signed ANS-104 data item"
        )
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"body is not JSON: {err}") from err
    except RecursionError as err:
        raise BadInput("body is nested too deeply to be a message") from err
    if not isinstance(obj, dict):
        raise BadInput(f"body must be a JSON object, got {type(obj).__name__}")
    if _SURROGATE_ESCAPE.search(body):
        _refuse_surrogates(obj)
    return obj


def _refuse_surrogates(value: object) -> None:
    """BadInput when any key or string in `value` holds a lone surrogate (walked without recursion)."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as err:
                raise BadInput(f"body holds a lone UTF-16 surrogate ({item[err.start]!r}): not valid text") from err


def message_from_json(obj: Mapping[str, object], *, owner: str) -> Message:
    """Legacy AO shape when `Tags` is a list, otherwise a flat map of tags plus data/target/anchor."""
    tags = next((v for k, v in obj.items() if k.lower() == "tags"), None)
    if tags is not None and not isinstance(tags, list):
        raise BadInput("Tags must be a list of {name, value}; or send a flat map of tags without Tags")
    if isinstance(tags, list):
        legacy = {_legacy_key(k): v for k, v in obj.items()}
        return Message.from_legacy_json(legacy, owner=owner)
    flat = {k: _flat_value(k, v) for k, v in obj.items()}
    return Message.from_flat(flat, owner=owner)


_LEGACY_FIELDS = {k.lower(): k for k in ("Target", "Anchor", "Tags", "Data", "Id", "From", "Owner")}


def _legacy_key(key: str) -> str:
    return _LEGACY_FIELDS.get(key.lower(), key)


def _flat_value(key: str, value: object) -> str | None:
    """Flat-map tag values are strings on the wire; accept JSON numbers and booleans as their text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if value is None or isinstance(value, str):
        return value
    raise BadInput(f"tag {key!r} must be a string, got {type(value).__name__}")


def for_process(msg: Message | None, pid: str | None) -> Message:
    """`msg` when it may be scheduled on `pid`: a message that names another Target is refused, so a
    message signed for process A can never be replayed onto process B."""
    assert msg is not None  # the callers' `incoming` requires a message
    if pid is not None and msg.target and msg.target != pid:
        raise BadInput(f"this message's Target is {msg.target}, not {pid}: schedule it on its own process")
    return msg


def verified_data_item(body: bytes) -> DataItem:
    """A parsed data item whose signature verifies; BadInput (400) saying why not otherwise."""
    return checked_signature(parsed_data_item(body))


def parsed_data_item(body: bytes) -> DataItem:
    """A parsed data item, its signature not yet checked (checked_signature); BadInput when malformed."""
    try:
        return DataItem.parse(body)
    except AONodeError:
        raise
    except (ValueError, IndexError, TypeError, OverflowError) as err:
        raise BadInput(f"not an ANS-104 data item: {err}") from err


def checked_signature(item: DataItem) -> DataItem:
    """`item` when its signature verifies; BadInput (400) saying why not otherwise."""
    try:
        valid = item.verify()
    except (ValueError, TypeError) as err:
        raise BadInput(f"the data item's signature cannot be checked: {err}") from err
    if not valid:
        raise BadInput("the data item's signature does not verify")
    return item


def message_from_data_item(body: bytes) -> Message:
    return verified_data_item(body).to_message()


DRAIN_FACTOR = 4  # an oversized body is read and dropped up to this many times the limit before the 413


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or TooLarge once Content-Length or the bytes received pass `limit`.

    The rest of an oversized body is read and dropped (up to DRAIN_FACTOR x the limit) before the
    413 is sent: a client still writing its body when the server answers and closes would see a
    broken connection instead of the 413 that tells it why."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        if int(declared) <= DRAIN_FACTOR * limit:
            await _drain(request, DRAIN_FACTOR * limit)
        raise TooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request, DRAIN_FACTOR * limit - size)
            raise TooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, budget: int) -> None:
    """Read and drop what is left of the body, at most `budget` bytes."""
    async for chunk in request.stream():
        budget -= len(chunk)
        if budget <= 0:
            return
