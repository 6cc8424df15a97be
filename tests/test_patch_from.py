"""`Patch-From` (HyperBEAM's patch@1.0 `patch-from`): patches are read from the result list the
definition names (`/results/outbox` by default, as genesis-wasm@1.0 sets it), and only from there;
a path this node does not read is refused at spawn."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aonode.engine.crypto import Wallet
from aonode.engine.devices.base import ProcessState, SlotContext
from aonode.engine.devices.patch import apply_patches, patch_source
from aonode.engine.errors import BadInput
from aonode.engine.message import Message
from aonode.engine.node import Node

USER = "U" * 43
PATCH = {"Tags": [{"name": "device", "value": "patch@1.0"}, {"name": "cache", "value": {"k": "v"}}]}


def _process(patch_from: str | None) -> Message:
    tags = [("Type", "Process")] + ([("Patch-From", patch_from)] if patch_from is not None else [])
    return Message.create(owner=USER, tags=tags)


@pytest.mark.parametrize("raw, source", [(None, "Messages"), ("/results/outbox", "Messages"),
                                         ("results/outbox/", "Messages"), ("base:/results/spawns", "Spawns"),
                                         ("/Results/Assignments", "Assignments")])
def test_patch_from_names_a_result_list(raw: str | None, source: str) -> None:
    assert patch_source(_process(raw)) == source


@pytest.mark.parametrize("raw", ["/", "req:/results/outbox", "/results/output", "/state"])
def test_other_patch_from_paths_are_refused(raw: str) -> None:
    with pytest.raises(BadInput, match="Patch-From"):
        patch_source(_process(raw))


def test_patches_are_taken_only_from_the_named_list() -> None:
    state = ProcessState(process_id="P" * 43, process=_process("/results/spawns"), cache={})
    ctx = SlotContext(results={"Messages": [dict(PATCH)], "Spawns": [dict(PATCH)], "Error": None})
    apply_patches(state, ctx)
    assert state.cache == {"k": "v"} and ctx.results["Spawns"] == [] and ctx.results["Messages"] == [PATCH]


def test_a_stored_definition_with_another_path_keeps_the_outbox() -> None:
    """Definitions spawned before Patch-From was checked still compute: they patch from the outbox."""
    state = ProcessState(process_id="P" * 43, process=_process("/"), cache={})
    ctx = SlotContext(results={"Messages": [dict(PATCH)], "Error": None})
    apply_patches(state, ctx)
    assert state.cache == {"k": "v"} and ctx.results["Messages"] == []


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    from aonode.server.compose import make_node

    running = make_node(tmp_path_factory.mktemp("patch-from"), wallet=Wallet.generate("ed25519"))
    try:
        yield running
    finally:
        running.close()


def _run(node: Node, pid: str, code: str) -> dict[str, Any]:
    node.schedule(pid, Message.create(owner=USER, target=pid, tags=(("Action", "Eval"),), data=code))
    return dict(node.now(pid))


@pytest.mark.slow
def test_a_real_process_patches_from_where_its_definition_says(node: Node) -> None:
    outbox = node.spawn(Message.create(owner=USER, tags=(("Patch-From", "/results/outbox"),)))["process"]
    view = _run(node, outbox, "Send({ device = 'patch@1.0', cache = { via = 'outbox' } })")
    assert view["cache"] == {"via": "outbox"} and view["results"]["Messages"] == []

    spawns = node.spawn(Message.create(owner=USER, tags=(("Patch-From", "/results/spawns"),)))["process"]
    view = _run(node, spawns, "Send({ device = 'patch@1.0', cache = { via = 'outbox' } })")
    assert "via" not in view["cache"] and len(view["results"]["Messages"]) == 1  # an ordinary message now
    view = _run(node, spawns, "Spawn(ao.env.Module.Id, { device = 'patch@1.0', cache = { via = 'spawns' } })")
    assert view["results"]["Error"] is None
    assert view["cache"] == {"via": "spawns"} and view["results"]["Spawns"] == []


def test_a_definition_naming_another_patch_source_is_refused_at_spawn(node: Node) -> None:
    with pytest.raises(BadInput, match="Patch-From"):
        node.spawn(Message.create(owner=USER, tags=(("Patch-From", "/"),)))
