"""patch@1.0: patch messages leave the outbox and their payload lands, keys exactly as written, in state.cache."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aonode.engine.devices.base import ProcessState, Signal, SlotContext
from aonode.engine.devices.patch import Patch, apply_patches, merge, payload
from aonode.engine.message import Message

pytestmark = pytest.mark.slow  # hypothesis searches over merges

PID = "P" * 43
USER = "U" * 43
OTHER = "T" * 43


def _state(messages: list[Any], cache: dict[str, Any] | None = None) -> tuple[ProcessState, SlotContext]:
    process = Message.create(owner=USER, tags=(("Type", "Process"),))
    state = ProcessState(process_id=PID, process=process, cache=cache or {})
    ctx = SlotContext(results={"Output": {"data": ""}, "Messages": messages, "Spawns": [], "Assignments": [],
                               "Error": None})
    return state, ctx


def _aos_send(reference: int, target: str | None, fields: list[tuple[str, Any]]) -> dict[str, Any]:
    """An outbox entry exactly as aos 2.0.x `ao.send` builds it and its json.encode writes it."""
    tags = [{"name": "Data-Protocol", "value": "ao"}, {"name": "Variant", "value": "ao.TN.1"},
            {"name": "Type", "value": "Message"}, {"name": "Reference", "value": str(reference)}]
    tags += [{"name": name, "value": value} for name, value in fields]
    out: dict[str, Any] = {"Anchor": f"{reference:032d}", "Tags": tags}
    if target is not None:
        out["Target"] = target
    # Round-trip through JSON text: the device sees what the wasm result decodes to.
    return json.loads(json.dumps(out))


def _transfer(ref: int) -> dict[str, Any]:
    return _aos_send(ref, OTHER, [("Action", "Credit-Notice"), ("Quantity", "5")])


def test_aos_seed_patch_lands_in_cache_and_leaves_outbox() -> None:
    patch = _aos_send(2, None, [("device", "patch@1.0"),
                                ("cache", {"balances": {USER: "100", "Bob": "7"}, "totalsupply": "107"})])
    first, last = _transfer(1), _transfer(3)
    state, ctx = _state([first, patch, last])

    assert Patch().compute(state, ctx) is Signal.OK

    assert state.cache == {"balances": {USER: "100", "Bob": "7"}, "totalsupply": "107"}
    assert ctx.results["Messages"] == [first, last]
    assert ctx.results["Patches"] == [state.cache]
    assert "Patch-Errors" not in ctx.results


# The outbox of `Send({Target=B, Action='Ping', Data='hi', Count=3});
# Send({device='patch@1.0', cache={Balances={Bob='1'}, TotalSupply=7, Empty={}}})` as aos2_0_6.wasm
# returned it under @permaweb/ao-loader 0.0.49 (note the number tag value and `{}` encoded as `[]`).
CAPTURED_OUTBOX = """[
 {"Anchor": "00000000000000000000000000000001", "Target": "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
  "Data": "hi", "Tags": [{"name": "Data-Protocol", "value": "ao"}, {"name": "Variant", "value": "ao.TN.1"},
  {"name": "Type", "value": "Message"}, {"name": "Reference", "value": "1"}, {"name": "Count", "value": 3},
  {"name": "Action", "value": "Ping"}]},
 {"Anchor": "00000000000000000000000000000002", "Tags": [{"name": "Data-Protocol", "value": "ao"},
  {"name": "Variant", "value": "ao.TN.1"}, {"name": "Type", "value": "Message"},
  {"name": "Reference", "value": "2"}, {"name": "device", "value": "patch@1.0"},
  {"name": "cache", "value": {"Empty": [], "TotalSupply": 7, "Balances": {"Bob": "1"}}}]}
]"""


def test_outbox_captured_from_the_real_image() -> None:
    outbox = json.loads(CAPTURED_OUTBOX)
    state, ctx = _state(outbox, cache={"Balances": {"alice": "3"}, "Empty": {"was": "a map"}, "empty": "kept"})
    apply_patches(state, ctx)
    assert ctx.results["Messages"] == [json.loads(CAPTURED_OUTBOX)[0]]
    assert state.cache == {"Balances": {"alice": "3", "Bob": "1"}, "TotalSupply": 7, "Empty": [], "empty": "kept"}


def test_envelope_is_never_merged() -> None:
    patch = _aos_send(1, PID, [("device", "patch@1.0"), ("From-Process", OTHER), ("Pushed-For", "x"),
                               ("Ticker", "TOK")])
    patch["Data"] = "body"
    state, ctx = _state([patch])
    apply_patches(state, ctx)
    assert state.cache == {"Ticker": "TOK"}


def test_json_string_tag_is_decoded_as_a_table() -> None:
    encoded = json.dumps({"Balances": {"A": "1"}, "Name": "{not json"})
    patch = _aos_send(1, None, [("device", "patch@1.0"), ("cache", encoded), ("Note", "{also not json")])
    state, ctx = _state([patch])
    apply_patches(state, ctx)
    assert state.cache == {"Balances": {"A": "1"}, "Name": "{not json", "Note": "{also not json"}


def test_hyperbeam_style_top_level_keys_and_method_patch() -> None:
    patch = {"method": "PATCH", "Prices": {"Apple": 100, "banana": 200}}
    state, ctx = _state([patch, {"method": "GET", "prices": {"apple": 1}}])
    apply_patches(state, ctx)
    assert state.cache == {"Prices": {"Apple": 100, "banana": 200}}
    assert ctx.results["Messages"] == [{"method": "GET", "prices": {"apple": 1}}]


def test_device_and_method_match_case_insensitively() -> None:
    variants = [
        {"Tags": [{"name": "Device", "value": "Patch@1.0"}, {"name": "a", "value": "1"}]},
        {"DEVICE": "patch@1.0", "b": "2"},
        {"Method": "patch", "c": "3"},
    ]
    state, ctx = _state(variants)
    apply_patches(state, ctx)
    assert state.cache == {"a": "1", "b": "2", "c": "3"}
    assert ctx.results["Messages"] == []


def test_not_a_patch_stays() -> None:
    messages = [{"Target": OTHER, "Tags": [{"name": "device", "value": "patch@2.0"}]},
                {"Target": OTHER, "Tags": [{"name": "Action", "value": "PATCH"}]}]
    state, ctx = _state(copy.deepcopy(messages))
    apply_patches(state, ctx)
    assert ctx.results["Messages"] == messages
    assert state.cache == {}
    assert ctx.results["Patches"] == []


def test_maps_merge_deep_scalars_and_lists_replace_nothing_deleted() -> None:
    state, ctx = _state([], cache={"balances": {"a": "1", "b": "2"}, "list": [1, 2], "keep": "x",
                              "n": {"deep": {"x": 1}}})
    ctx.results["Messages"] = [
        {"device": "patch@1.0", "cache": {"balances": {"b": "3", "c": "4"}, "list": [9],
                                          "n": {"deep": {"y": 2}}}},
        {"device": "patch@1.0", "keep": {"now": "a map"}},
    ]
    apply_patches(state, ctx)
    assert state.cache == {"balances": {"a": "1", "b": "3", "c": "4"}, "list": [9],
                           "keep": {"now": "a map"}, "n": {"deep": {"x": 1, "y": 2}}}


def test_later_patch_in_one_message_wins_in_order() -> None:
    state, ctx = _state([{"device": "patch@1.0", "v": "1"}, {"device": "patch@1.0", "v": "2"}])
    apply_patches(state, ctx)
    assert state.cache == {"v": "2"}
    assert ctx.results["Patches"] == [{"v": "1"}, {"v": "2"}]


def test_keys_that_differ_only_in_case_are_two_keys() -> None:
    """Issue 10 item 1: `Book = { ALICE = 7, alice = 25 }` keeps both; nothing is lowercased."""
    state, ctx = _state([], cache={"mykey": "old"})
    ctx.results["Messages"] = [_aos_send(1, None, [
        ("device", "patch@1.0"),
        ("cache", {"MyKey": "a", "Book": {"ALICE": 7, "alice": 25}, "fine": {"In": 1, "in": 2}}),
    ])]
    apply_patches(state, ctx)
    assert state.cache == {"mykey": "old", "MyKey": "a", "Book": {"ALICE": 7, "alice": 25},
                           "fine": {"In": 1, "in": 2}}
    assert "Patch-Errors" not in ctx.results


def test_the_same_name_twice_with_different_values_is_reported_and_not_set() -> None:
    state, ctx = _state([], cache={"total": "old"})
    ctx.results["Messages"] = [{"device": "patch@1.0", "cache": {"total": "1", "ok": "2"}, "total": "3"}]
    apply_patches(state, ctx)
    assert state.cache == {"total": "old", "ok": "2"}
    errors = ctx.results["Patch-Errors"]
    assert len(errors) == 1 and "'total'" in errors[0] and errors[0].startswith("patch 0: ")


def test_same_key_with_same_value_twice_is_not_a_collision() -> None:
    message = {"device": "patch@1.0", "Name": "x", "Tags": [{"name": "name", "value": "x"},
                                                           {"name": "Name", "value": "x"}]}
    found = payload(message)
    assert found.values == {"Name": "x", "name": "x"} and found.errors == []


def test_json_equal_is_type_strict() -> None:
    found = payload({"device": "patch@1.0", "a": 1, "Tags": [{"name": "a", "value": True}]})
    assert found.values == {} and len(found.errors) == 1


def test_cache_key_collides_with_root_key() -> None:
    found = payload({"device": "patch@1.0", "cache": {"Total": "1", "total": "4"}, "Total": "2", "other": "3"})
    assert found.values == {"total": "4", "other": "3"}
    assert len(found.errors) == 1 and "'Total'" in found.errors[0]


def test_cache_that_is_not_a_table_is_refused() -> None:
    state, ctx = _state([{"device": "patch@1.0", "cache": "scalar", "x": "1"}], cache={"y": "2"})
    apply_patches(state, ctx)
    assert state.cache == {"x": "1", "y": "2"}
    assert "must be a table" in ctx.results["Patch-Errors"][0]


def test_keys_inside_lists_are_kept_exactly() -> None:
    found = payload({"device": "patch@1.0", "Rows": [{"ID": 1}, {"Id": 2, "id": 3}]})
    assert found.values == {"Rows": [{"ID": 1}, {"Id": 2, "id": 3}]}
    assert found.errors == []


def test_error_result_without_outbox_is_left_alone() -> None:
    state, ctx = _state([])
    ctx.results = {"Error": "boom"}
    apply_patches(state, ctx)
    assert ctx.results == {"Error": "boom"}


def test_second_pass_keeps_the_record() -> None:
    state, ctx = _state([{"device": "patch@1.0", "a": "1"}])
    device = Patch()
    device.compute(state, ctx)
    device.compute(state, ctx)
    assert ctx.results["Patches"] == [{"a": "1"}]
    assert state.cache == {"a": "1"}


def test_replaying_recorded_patches_rebuilds_the_cache() -> None:
    start = {"keep": {"x": 1}}
    state, ctx = _state([], cache=copy.deepcopy(start))
    records: list[dict[str, Any]] = []
    for batch in ([{"device": "patch@1.0", "Keep": {"Y": 2}}, _transfer(1)],
                  [{"method": "PATCH", "cache": {"keep": "flat"}}]):
        ctx.results = {"Messages": batch}
        apply_patches(state, ctx)
        records.extend(ctx.results["Patches"])
    rebuilt = copy.deepcopy(start)
    for record in records:
        merge(rebuilt, record)
    assert rebuilt == state.cache == {"keep": "flat", "Keep": {"Y": 2}}


def test_merge_does_not_alias_the_patch() -> None:
    patch = {"a": {"b": [1, {"c": 2}]}}
    cache: dict[str, Any] = {}
    merge(cache, patch)
    patch["a"]["b"][1]["c"] = 99
    assert cache == {"a": {"b": [1, {"c": 2}]}}


# --- properties -----------------------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
_any_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=4)), max_leaves=12)


def _shaped(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """Lowercase maps whose key decides the shape ('m…' is always a map), so no collisions arise."""
    leaf_keys = st.text(alphabet="abc", min_size=1, max_size=2).map(lambda k: "s" + k)
    values = st.one_of(_scalars, st.lists(st.integers(), max_size=2))
    if depth == 0:
        return st.dictionaries(leaf_keys, values, max_size=3)
    map_keys = st.text(alphabet="abc", min_size=1, max_size=2).map(lambda k: "m" + k)
    return st.builds(lambda a, b: {**a, **b}, st.dictionaries(leaf_keys, values, max_size=3),
                     st.dictionaries(map_keys, _shaped(depth - 1), max_size=2))


@settings(max_examples=100, deadline=None)
@given(_shaped(), _shaped(), _shaped())
def test_merge_is_associative_for_shape_consistent_maps(a: dict, b: dict, c: dict) -> None:
    left = merge(merge(copy.deepcopy(a), b), c)
    right = merge(copy.deepcopy(a), merge(copy.deepcopy(b), c))
    assert left == right


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=4), _any_json, max_size=5))
def test_payload_keys_are_kept_exactly_at_every_level(body: dict) -> None:
    found = payload({"device": "patch@1.0", "cache": body})
    assert found.values == body and found.errors == []


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            out.add(prefix + (key,))
            out |= _paths(item, prefix + (key,))
    return out


def _replaced_above(patch: dict, path: tuple[str, ...]) -> bool:
    """True when the patch puts a non-map at a proper prefix of `path` (scalars replace)."""
    node: Any = patch
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
        if not isinstance(node, dict):
            return True
    return False


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=3), _any_json, max_size=5),
       st.dictionaries(st.text(max_size=3), _any_json, max_size=5))
def test_merge_never_deletes_a_key(old: dict, body: dict) -> None:
    cache = payload({"device": "patch@1.0", "cache": old}).values
    patch = payload({"device": "patch@1.0", "cache": body}).values
    before = _paths(cache)
    merged = merge(copy.deepcopy(cache), patch)
    after = _paths(merged)
    assert all(p in after for p in before if not _replaced_above(patch, p))
    assert _paths(patch) <= after


# --- end to end: a real AOS image on a real node ----------------------------------------------------

def test_aos_seed_patch_through_a_real_node(tmp_path: Any) -> None:
    from aonode.engine.crypto import Wallet
    from aonode.server.compose import make_node

    node = make_node(tmp_path, wallet=Wallet.generate("ed25519"))
    try:
        pid = node.spawn(Message.create(owner=USER, tags=(("Name", "token"),)))["process"]

        def run(code: str) -> dict[str, Any]:
            node.schedule(pid, Message.create(owner=USER, target=pid, tags=(("Action", "Eval"),),
                                              data=code))
            return node.now(pid)

        seeded = run("Balances = {[ao.id] = '100', Bob = '7'}; "
                     "Send({device = 'patch@1.0', cache = {balances = Balances, totalsupply = '107'}}); "
                     "return 'seeded'")
        assert seeded["results"]["Error"] is None and seeded["results"]["Messages"] == []
        seeded_cache = copy.deepcopy(seeded["cache"])  # a live view: later slots change it
        assert seeded_cache == {"balances": {pid: "100", "Bob": "7"}, "totalsupply": "107"}

        later = run("Send({device = 'patch@1.0', cache = {balances = {Carol = '1'}}}); return 'more'")
        assert later["cache"]["balances"] == {pid: "100", "Bob": "7", "Carol": "1"}
        assert node.compute(pid, 1)["cache"] == seeded_cache  # each slot keeps its own cache
    finally:
        node.close()
