"""Devices by name: a process definition names its devices; this turns names into objects.

Every device the node runs is registered with what its `info()` says, so `/~meta@1.0/info` lists
exactly what is here. Only `stackable` devices may be named in an Execution-Stack; the others
(process, scheduler, stack, push, cron) are the frame the stack runs in.
"""

from __future__ import annotations

from collections.abc import Callable

from aonode.engine.devices.base import DeviceInfo
from aonode.engine.errors import BadInput

Factory = Callable[[], object]  # a fresh device (or the node's one instance of it); None: listed only


class Registry:
    def __init__(self) -> None:
        self._devices: dict[str, tuple[DeviceInfo, Factory | None]] = {}

    def register(self, info: DeviceInfo, factory: Factory | None) -> None:
        self._devices[info.name.lower()] = (info, factory)

    def infos(self) -> list[DeviceInfo]:
        """What every registered device says about itself, in registration order."""
        return [info for info, _ in self._devices.values()]

    def names(self) -> list[str]:
        """The devices an Execution-Stack may name, sorted."""
        return sorted(name for name, (info, _) in self._devices.items() if info.stackable)

    def create(self, name: str, *, in_stack: bool = True) -> object:
        """The device named `name`; `in_stack` refuses those an Execution-Stack may not name."""
        found = self._devices.get(name.strip().lower())
        if found is None or found[1] is None or (in_stack and not found[0].stackable):
            raise BadInput(f"unknown device {name!r}; this node has {', '.join(self.names())}")
        return found[1]()
