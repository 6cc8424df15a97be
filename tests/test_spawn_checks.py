"""Issue 10 item 11: a spawn of an image that can never run (no `handle` export, an import this node
does not provide) is refused at spawn with the reason, over real HTTP; a runnable one is accepted."""
from __future__ import annotations

from pathlib import Path

import wasmtime

from aonode.engine.errors import NotFound
from aonode.engine.images import Catalogue, ResolvedImage
from aonode.engine.node import Node
from aonode.server.app import create_app
from tests.helpers.httpnode import serving
from tests.helpers.images import image_path

IMAGES = {
    "no-handle": '(module (memory (export "memory") 1) (func (export "other") (result i32) i32.const 0))',
    "odd-import": '(module (import "mystery" "thing" (func)) (memory (export "memory") 1)'
                  ' (func (export "handle") (param i32 i32) (result i32) i32.const 0))',
}


def _resolve(ref: str) -> ResolvedImage:
    if ref in IMAGES:
        return ResolvedImage(ref, wasmtime.wat2wasm(IMAGES[ref]))
    if ref == "aos":
        return ResolvedImage(ref, image_path("aos2_0_6.wasm").read_bytes())
    raise NotFound(f"no image {ref}")


def test_images_that_can_never_run_are_refused_at_spawn(tmp_path: Path) -> None:
    node = Node(tmp_path, True, catalogue=Catalogue(resolve=_resolve))
    try:
        with serving(create_app(node, dev=True)) as url:
            import httpx

            with httpx.Client(base_url=url, timeout=120) as c:
                for ref, needle in (("no-handle", "handle"), ("odd-import", "mystery.thing")):
                    r = c.post("/~process@1.0/schedule", json={"Tags": [{"name": "Module", "value": ref}]})
                    assert r.status_code == 400, r.text
                    assert needle in r.json()["error"] and "never run" in r.json()["error"]
                assert node.info()["processes"] == []  # nothing was stored
                r = c.post("/~process@1.0/schedule", json={"Tags": [{"name": "Module", "value": "aos"}]})
                assert r.status_code == 200, r.text
    finally:
        node.close()
