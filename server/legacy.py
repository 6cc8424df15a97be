"""Where the legacy CU/MU/SU routes plug into the app, and the `aoid` path convertor they use.

The routes themselves live in server/legacy_api.py (the fuller implementation aoconnect is tested
against). This module stays small so app.py can mount them without importing their dependencies
at import time, and so `/{id:aoid}` never shadows `/<pid>~process@1.0/...`.
"""
from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import BaseRoute


class TextConvertor(Convertor[str]):
    """A path part matched by `regex` and passed through as text."""

    def __init__(self, regex: str) -> None:
        self.regex = regex

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("aoid", TextConvertor("[A-Za-z0-9_-]{43}"))  # a 43-character base64url id


def routes() -> list[BaseRoute]:
    """The legacy API routes, to be matched before the HyperBEAM catch-all."""
    from aonode.server.legacy_api import legacy_routes

    return legacy_routes()
