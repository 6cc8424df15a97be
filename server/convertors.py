"""The path convertors the route table uses: `aoid` (a 43-character id) and `device` (a first path
segment naming a device, `<pid>~process@1.0` or `~meta@1.0`), so `/{id:aoid}` never shadows those."""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class TextConvertor(Convertor[str]):
    """A path part matched by `regex` and passed through as text."""

    def __init__(self, regex: str) -> None:
        self.regex = regex  # type: ignore[misc]  # starlette declares it per class; one class serves many

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("aoid", TextConvertor("[A-Za-z0-9_-]{43}"))  # a 43-character base64url id
register_url_convertor("device", TextConvertor("[^/]*~.*"))
