"""Path parsing, reading into a state, and the wire codec: pure functions, no server needed."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aonode.engine.errors import BadInput, NotFound
from aonode.engine.message import Message
from aonode.server import codec
from aonode.server.paths import MetaPath, ProcessPath, parse, parse_cached, select

PID = "Zx9_-" + "a" * 38

STATE = {
    "process": PID,
    "at-slot": 3,
    "results": {"Output": {"data": "hello", "prompt": "aos> "}, "Messages": [{"Target": "x"}]},
    "cache": {"balances": {"abc": "10"}, "totalsupply": "1000", "flags": [True, 2.5]},
}


@pytest.mark.parametrize("path, query, expected", [
    ("/~process@1.0/schedule", {}, ProcessPath(None, "schedule")),
    (f"/{PID}~process@1.0/schedule", {"from": "2", "to": "9"}, ProcessPath(PID, "schedule", frm=2, to=9)),
    (f"/{PID}~process@1.0/slot", {}, ProcessPath(PID, "slot")),
    (f"/{PID}~process@1.0/slot/current", {}, ProcessPath(PID, "slot", keys=("current",))),
    (f"/{PID}~process@1.0/snapshot", {}, ProcessPath(PID, "snapshot")),
    (f"/{PID}~process@1.0/init", {}, ProcessPath(PID, "init")),
    (f"/{PID}~process@1.0/compute", {}, ProcessPath(PID, "compute")),
    (f"/{PID}~process@1.0/compute/7", {}, ProcessPath(PID, "compute", slot=7)),
    (f"/{PID}~process@1.0/compute", {"slot": "7"}, ProcessPath(PID, "compute", slot=7)),
    (f"/{PID}~process@1.0/compute/7", {"slot": "7"}, ProcessPath(PID, "compute", slot=7)),
    (f"/{PID}~process@1.0/compute/0/cache/balances", {}, ProcessPath(PID, "compute", 0, ("cache", "balances"))),
    (f"/{PID}~process@1.0/compute/at-slot", {}, ProcessPath(PID, "compute", keys=("at-slot",))),
    (f"/{PID}~process@1.0/now", {}, ProcessPath(PID, "now")),
    (f"/{PID}~process@1.0/NOW/Cache/Balances", {}, ProcessPath(PID, "now", keys=("Cache", "Balances"))),
    (f"/{PID}~process@1.0/now/cache/balances~json@1.0", {},
     ProcessPath(PID, "now", keys=("cache", "balances"), as_json=True)),
    (f"/{PID}~process@1.0/now/cache/~json@1.0", {}, ProcessPath(PID, "now", keys=("cache",), as_json=True)),
    (f"//{PID}~process@1.0//now/results/data/", {}, ProcessPath(PID, "now", keys=("results", "data"))),
    (f"/{PID}~process@1.0/now/cache/balances/serialize~json@1.0", {},
     ProcessPath(PID, "now", keys=("cache", "balances"), as_json=True)),
    (f"/{PID}~process@1.0/now/serialize~json@1.0", {}, ProcessPath(PID, "now", as_json=True)),
    (f"/{PID}/now/cache/balances", {}, ProcessPath(PID, "now", keys=("cache", "balances"))),
    (f"/{PID}/compute/3", {}, ProcessPath(PID, "compute", slot=3)),
    ("/~meta@1.0/info/serialize~json@1.0", {}, MetaPath("info", as_json=True)),
    ("/~meta@1.0/info", {}, MetaPath("info")),
    ("/~meta@1.0/info/address~json@1.0", {}, MetaPath("info", ("address",), as_json=True)),
])
def test_parse(path: str, query: dict, expected: object) -> None:
    assert parse(path, query) == expected
    assert parse_cached(path, "&".join(f"{k}={v}" for k, v in query.items())) == expected


@pytest.mark.parametrize("path, query", [
    (f"/{PID}~process@1.0/compute/-1", {}),
    (f"/{PID}~process@1.0/compute", {"slot": "x"}),
    (f"/{PID}~process@1.0/compute", {"slot": "-3"}),
    (f"/{PID}~process@1.0/compute/3", {"slot": "4"}),
    (f"/{PID}~process@1.0/now", {"slot": "4"}),
    (f"/{PID}~process@1.0/schedule", {"from": "one"}),
    ("/bad$pid~process@1.0/now", {}),
])
def test_parse_rejects_malformed_input(path: str, query: dict) -> None:
    with pytest.raises(BadInput):
        parse(path, query)


@pytest.mark.parametrize("path", [
    "/", "/favicon.ico", f"/{PID}~process@1.0", f"/{PID}~process@1.0/state", "/~process@1.0/now",
    "/~process@1.0/schedule/extra", f"/{PID}~process@1.0/now/3",
    "/~meta@1.0", "/~meta@1.0/secrets",
])
def test_parse_unknown_paths_are_not_found(path: str) -> None:
    with pytest.raises(NotFound):
        parse(path, {})


@pytest.mark.parametrize("keys, expected", [
    ((), STATE),
    (("at-slot",), 3),
    (("AT-SLOT",), 3),
    (("cache", "balances"), {"abc": "10"}),
    (("Cache", "Balances", "abc"), "10"),
    (("cache", "totalsupply"), "1000"),
    (("cache", "flags", "1"), True),
    (("cache", "flags", "2"), 2.5),
    (("results", "data"), "hello"),
    (("Results", "Data"), "hello"),
    (("results", "output", "prompt"), "aos> "),
    (("results", "outbox", "1", "target"), "x"),
])
def test_select(keys: tuple[str, ...], expected: object) -> None:
    assert select(STATE, keys) == expected


def test_select_matches_exactly_first_then_ignoring_case_and_names_ambiguity() -> None:
    """Issue 10 item 1: keys are stored as written; `ALICE` and `alice` are two keys."""
    book = {"cache": {"Book": {"ALICE": 7, "alice": 25, "Bob": 1}}}
    assert select(book, ("cache", "Book", "ALICE")) == 7
    assert select(book, ("cache", "book", "alice")) == 25
    assert select(book, ("cache", "book", "bob")) == 1  # the one key equal ignoring case
    with pytest.raises(NotFound) as err:
        select(book, ("cache", "Book", "Alice"))
    assert "ALICE" in str(err.value) and "alice" in str(err.value)


def test_select_results_data_when_output_is_text() -> None:
    assert select({"results": {"Output": "plain"}}, ("results", "data")) == "plain"


@pytest.mark.parametrize("keys", [
    ("cache", "nope"), ("cache", "flags", "0"), ("cache", "flags", "3"), ("cache", "totalsupply", "x"),
    ("results", "data", "more"), ("nothing",),
])
def test_select_missing_key_names_it(keys: tuple[str, ...]) -> None:
    with pytest.raises(NotFound) as err:
        select(STATE, keys)
    assert keys[0] in str(err.value)


def test_encode_scalar_leaf_as_raw_text_unless_json_is_asked() -> None:
    assert codec.encode("1000") == codec.Encoded(b"1000", codec.TEXT)
    assert codec.encode(42).body == b"42"
    assert codec.encode(True).body == b"true"
    assert codec.encode("1000", as_json=True) == codec.Encoded(b'"1000"', codec.JSON)
    assert codec.encode({"a": [1, "é"]}) == codec.Encoded('{"a":[1,"é"]}'.encode(), codec.JSON)
    assert codec.encode(None).media_type == codec.JSON


def test_wants_json() -> None:
    assert codec.wants_json("application/json")
    assert codec.wants_json("text/html, Application/JSON;q=0.9")
    assert not codec.wants_json("*/*")
    assert not codec.wants_json(None)


def test_message_from_legacy_json_and_flat_map_agree() -> None:
    legacy = {"Target": PID, "Tags": [{"name": "Action", "value": "Eval"}], "Data": "return 1"}
    flat = {"target": PID, "Action": "Eval", "data": "return 1"}
    a = codec.message_from_json(legacy, owner="me")
    b = codec.message_from_json(flat, owner="me")
    assert isinstance(a, Message)
    assert (a.id, a.target, a.tags, a.data, a.owner) == (b.id, PID, (("Action", "Eval"),), "return 1", "me")


def test_message_from_json_lowercase_legacy_keys_and_scalar_tags() -> None:
    msg = codec.message_from_json({"tags": [{"name": "Action", "value": "Ping"}], "data": "x"}, owner="me")
    assert msg.tag("action") == "Ping" and msg.data == "x"
    flat = codec.message_from_json({"Quantity": 5, "Cast": True}, owner="me")
    assert flat.tag("Quantity") == "5" and flat.tag("Cast") == "true"
    with pytest.raises(BadInput):
        codec.message_from_json({"Nested": {"a": 1}}, owner="me")
    with pytest.raises(BadInput):
        codec.message_from_json({"Tags": "Eval"}, owner="me")


@pytest.mark.parametrize("body", [b"", b"   ", b"{not json", b"[1,2]", b"\xff\xfe"])
def test_parse_json_object_rejects_bad_bodies(body: bytes) -> None:
    with pytest.raises(BadInput):
        codec.parse_json_object(body)


def test_parse_json_object() -> None:
    assert codec.parse_json_object(json.dumps({"a": "b"}).encode()) == {"a": "b"}


def test_data_item_content_types() -> None:
    assert codec.is_data_item("application/octet-stream")
    assert codec.is_data_item("Application/ANS104; charset=binary")
    assert not codec.is_data_item("application/json")
    assert not codec.is_data_item(None)


def test_truncated_data_item_is_bad_input() -> None:
    with pytest.raises(BadInput):
        codec.message_from_data_item(b"\x01\x00\x00")


_SEGMENT = st.one_of(
    st.sampled_from(["now", "compute", "slot", "schedule", "cache", "results", "data", "~json@1.0",
                     "serialize~json@1.0", "0", "7", "-1", "~meta@1.0", "info", f"{PID}~process@1.0",
                     "~process@1.0", PID]),
    st.text(min_size=0, max_size=12),
)


@settings(max_examples=400, deadline=None)
@given(segments=st.lists(_SEGMENT, max_size=7), query=st.dictionaries(
    st.sampled_from(["slot", "from", "to", "x"]), st.text(max_size=6), max_size=3))
def test_parse_answers_or_says_what_is_wrong(segments: list[str], query: dict[str, str]) -> None:
    """Any path is either understood or a NotFound/BadInput (a 404/400, never a 500)."""
    try:
        parsed = parse("/" + "/".join(segments), query)
    except (NotFound, BadInput) as err:
        assert str(err)
        return
    assert isinstance(parsed, (ProcessPath, MetaPath))
    if isinstance(parsed, ProcessPath) and parsed.slot is not None:
        assert parsed.action == "compute" and parsed.slot >= 0


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(st.one_of(st.sampled_from(["cache", "results", "data", "flags", "1", "3", "output"]),
                               st.text(max_size=8)), max_size=5))
def test_select_finds_or_names_the_missing_key(keys: list[str]) -> None:
    try:
        select(STATE, keys)
    except NotFound as err:
        assert str(err).startswith("no key")
