"""The device contract on a real Node: every device says what it is, the Node lists exactly the
registry, only stackable devices may be named in an Execution-Stack, and the engine alone knows no
images (the catalogue comes from the composition root)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aonode.engine.crypto import Wallet
from aonode.engine.devices.base import KEYS
from aonode.engine.errors import BadInput, NotFound
from aonode.engine.message import Message
from aonode.engine.node import Node
from tests.helpers.nodeutil import OWNER, definition, make_node

# What /~meta@1.0/info listed before the registry said it (the list may only grow).
DEVICES_BEFORE = ["process@1.0", "scheduler@1.0", "stack@1.0", "push@1.0", "cron@1.0", "json-iface@1.0",
                  "multipass@1.0", "patch@1.0", "poda@1.0", "wasm64@1.0"]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path / "node")
    yield node
    node.close()


def test_info_lists_what_the_registry_devices_say(node: Node) -> None:
    infos = node.registry.infos()
    assert node.info()["devices"] == [info.name for info in infos]
    assert set(DEVICES_BEFORE) <= set(node.info()["devices"])
    assert all(info.version == "1.0" and info.keys for info in infos)


def test_every_stackable_device_handles_the_keys_it_names(node: Node) -> None:
    for info in node.registry.infos():
        if not info.stackable:
            continue
        device = node.registry.create(info.name)
        assert device.info() == info  # type: ignore[attr-defined]
        for key in KEYS:
            assert callable(getattr(device, key, None)) is (key in info.keys), (info.name, key)


@pytest.mark.parametrize("frame", ["push@1.0", "process@1.0", "scheduler@1.0", "stack@1.0", "cron@1.0"])
def test_frame_devices_cannot_be_named_in_a_stack(node: Node, frame: str) -> None:
    with pytest.raises(BadInput, match="unknown devices"):
        node.spawn(definition(("Execution-Stack", f"json-iface@1.0, {frame}, wasm64@1.0")))
    assert node.info()["processes"] == []


def test_the_engine_alone_resolves_no_image(tmp_path: Path) -> None:
    bare = Node(tmp_path / "bare", wallet=Wallet.generate("ed25519"))
    try:
        with pytest.raises(NotFound, match="no image catalogue"):
            bare.spawn(definition())
        with pytest.raises(BadInput, match="no default"):
            bare.spawn(Message.create(owner=OWNER, tags=(("Name", "no module"),)))
        assert bare.info()["modules"] == [] and bare.info()["processes"] == []
    finally:
        bare.close()
