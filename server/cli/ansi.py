"""AOS colours its prompt, printed tables and errors with ANSI escape codes for a terminal; in JSON a
reader sees `\\u001b[31m`. The CLI strips them from the JSON it prints (`--raw` keeps them)."""

from __future__ import annotations

import re

from aonode.engine.answers import JSON

ESCAPE = re.compile(r"(?:\x1b|\\27)\[[0-9;?]*[A-Za-z]")  # also as Lua prints it in a string: \27[31m


def strip(value: JSON) -> JSON:
    """`value` with every ANSI escape sequence removed from its strings, at any depth (keys too)."""
    if isinstance(value, str):
        return ESCAPE.sub("", value)
    if isinstance(value, list):
        return [strip(item) for item in value]
    if isinstance(value, dict):
        return {ESCAPE.sub("", key): strip(item) for key, item in value.items()}
    return value
