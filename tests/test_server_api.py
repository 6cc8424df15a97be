"""The server sees the Node only through NodeAPI (server/api.py): the Node must offer every member
of it with the same parameters and answer types, or a route would fail only when it is called."""
from __future__ import annotations

import inspect
from pathlib import Path

from aonode.engine.node import Node
from aonode.server.api import NodeAPI


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(cls).items()
            if inspect.isfunction(fn) and not name.startswith("_")}


def test_node_offers_every_nodeapi_method_with_its_parameters_and_answer_type() -> None:
    wanted = _methods(NodeAPI)
    assert {"compute", "results", "memory", "clock", "definition"} <= set(wanted)
    for name, signature in wanted.items():
        offered = getattr(Node, name, None)
        assert offered is not None, f"Node has no {name}"
        got = inspect.signature(offered)
        assert list(got.parameters) == list(signature.parameters), name
        for param in signature.parameters.values():  # a default the server relies on is there
            if param.default is not inspect.Parameter.empty:
                assert got.parameters[param.name].default == param.default, (name, param.name)
        assert got.return_annotation == signature.return_annotation, name


def test_node_has_the_nodeapi_attributes(tmp_path: Path) -> None:
    node = Node(tmp_path)
    try:
        for name in NodeAPI.__annotations__:
            assert hasattr(node, name), name
    finally:
        node.close()
