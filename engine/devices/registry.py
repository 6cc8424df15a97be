"""Devices by name: a process definition names its devices; this turns names into objects."""
from __future__ import annotations

from typing import Any, Callable

from aonode.engine.errors import BadInput

Factory = Callable[[Any], object]  # node-wide context -> device


class Registry:
    def __init__(self) -> None:
        self._factories: dict[str, Factory] = {}

    def register(self, name: str, factory: Factory) -> None:
        self._factories[name.lower()] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, context: Any) -> object:
        factory = self._factories.get(name.strip().lower())
        if factory is None:
            raise BadInput(f"unknown device {name!r}; this node has {', '.join(self.names())}")
        return factory(context)
