"""What a process may use: linear memory and fuel per message, and the size strings tags give them in."""

from __future__ import annotations

import re
from dataclasses import dataclass

SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


@dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes of linear memory
    fuel: int | None = None  # wasmtime fuel per message


def parse_size(text: str | int | None) -> int | None:
    """ "1-gb" / "512-mb" / "1073741824" → bytes (binary units, as the legacy CU reads Memory-Limit)."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[-_ ]?\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in SIZE_UNITS | {"": 1}:
        raise ValueError(f"not a size: {text!r}")
    unit = SIZE_UNITS.get(match.group(2).lower(), 1)
    return int(float(match.group(1)) * unit)
