"""Process definitions: what an unsigned spawn gets filled in, and what every spawn must pass.

Everything a definition names must work on this node before it is stored, or every later read of
the process would fail: its devices, cache frequency, limits, passes, PoDA settings and image.
"""

from __future__ import annotations

from collections.abc import Callable

from aonode.engine.devices import poda
from aonode.engine.devices.json_iface import module_id
from aonode.engine.devices.multipass import passes_of
from aonode.engine.devices.patch import patch_source
from aonode.engine.devices.process import cache_frequency, has_poda, stack_names
from aonode.engine.devices.registry import Registry
from aonode.engine.devices.stack import Stack
from aonode.engine.devices.wasm64 import check_compute_limit, limits_for
from aonode.engine.errors import BadInput, ModuleError
from aonode.engine.genesis import as_aos_definition
from aonode.engine.images import Catalogue
from aonode.engine.message import Message
from aonode.engine.wasm import Image, never_runs

MODULE_TAGS = ("module", "wasm-image", "image")  # the tags json-iface's module_id reads, in its order

# The frame devices this node runs, by the definition tag that may name them.
FRAME_DEVICES = (("Execution-Device", "stack@1.0"), ("Scheduler-Device", "scheduler@1.0"), ("Push-Device", "push@1.0"))


def complete(msg: Message, catalogue: Catalogue, authority: str) -> Message:
    """An unsigned definition with the tags it leaves out filled in (a signed one is taken as signed).

    A catalogue name in `Module` (or the default image) becomes the module's transaction id, so the
    process sees `ao.env.Module.Id` as it would on the network."""
    module = module_id(msg)
    if not module and msg.signature is not None:
        raise BadInput("the process definition names no image: add a Module tag")
    if msg.signature is not None:
        return msg
    extra: dict[str, str] = {}
    canonical = catalogue.canonical(module) if module else module
    if not module:
        if not catalogue.default_module:
            raise BadInput("the process definition names no image and this node has no default: add a Module tag")
        extra["Module"] = catalogue.canonical(catalogue.default_module)
    if msg.tag("Type") is None:
        extra["Type"] = "Process"
    if msg.tag("Data-Protocol") is None:
        extra["Data-Protocol"] = "ao"
    if msg.tag("Authority") is None:
        extra["Authority"] = authority  # so messages the node pushes between processes are trusted
    if not extra and canonical == module:
        return msg
    tags = tuple(
        (name, canonical if value == module and name.lower() in MODULE_TAGS else value) for name, value in msg.tags
    ) + tuple(extra.items())
    return Message.create(
        owner=msg.owner, target=msg.target, anchor=msg.anchor, tags=tags, data=msg.data, from_=msg.from_
    )


def check(msg: Message, registry: Registry, load_image: Callable[[str], object]) -> None:
    """Refuse (BadInput) a definition naming anything this node cannot run."""
    check_devices(msg, registry)
    cache_frequency(msg)
    limits_for(msg)
    check_compute_limit(msg)
    if passes_of(msg) > Stack.max_passes:
        raise BadInput(f"Passes must be at most {Stack.max_passes}")
    if has_poda(msg):
        poda.config(msg)
    patch_source(msg)
    image = load_image(module_id(msg))
    if isinstance(image, Image):
        problem = never_runs(image)
        if problem:
            raise ModuleError(f"image {module_id(msg)} can never run a message here: {problem}")


def check_devices(msg: Message, registry: Registry) -> None:
    aos = as_aos_definition(msg)  # genesis-wasm@1.0 names this node's AOS stack
    for key, only in FRAME_DEVICES:
        value = aos.tag(key)
        if value is not None and value.strip().lower() != only:
            raise BadInput(f"{key} {value!r} is not available on this node (it runs {only})")
    known = set(registry.names())
    unknown = [n for n in stack_names(msg) if n.lower() not in known]
    if unknown:
        raise BadInput(
            f"unknown devices in the execution stack: {', '.join(unknown)}; this node has {', '.join(sorted(known))}"
        )
