"""How one 64 KiB chunk of linear memory is stored, and read back verified.

A stored chunk (a body) is a zstd frame of the chunk, or a delta: a zstd frame of the chunk XOR a
base, the plain body last stored for the same offset. It is named by the sha256 of the body.

Why deltas: a message on a large Lua heap rewrites a few words in many pages (balances, object
headers, the collector's mark bits), so a changed chunk costs ~10 KiB of zstd on its own but a few
hundred bytes as its XOR with what its offset held, which is mostly zeros. A base is always plain
(no delta on a delta), so any chunk decodes from at most two frames.
Why the name hashes the body, not the chunk: a restore verifies the ~8 MiB it reads instead of ~50 MiB
of memory, and two deltas of the same chunk on different bases are different bodies, each naming
(keeping alive) its own base.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import zstandard

from aonode.engine.errors import AONodeError

CHUNK = 65536  # one wasm page: memory sizes are whole pages, so every chunk is full
ZERO = bytes(CHUNK)
ZERO_HASH = hashlib.sha256(ZERO).digest()  # names the all-zero chunk, which is never stored
ZSTD_LEVEL = 1
DELTA = b"AOXOR1\n\0"  # a delta body: DELTA, the base's name (32 bytes), zstd of the XOR
_DELTA_HEAD = len(DELTA) + 32
DELTA_LIMIT = CHUNK // 16  # a delta larger than this is stored plain instead and becomes the base


class SnapshotDamaged(AONodeError):
    """A stored snapshot does not match its name or its chunk hashes (or is incomplete)."""


def name_of(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def base_of(body: bytes) -> bytes | None:
    """The name of the base a delta body needs; None for a plain body."""
    return bytes(body[len(DELTA) : _DELTA_HEAD]) if body.startswith(DELTA) else None


def xor(a: bytes, b: bytes) -> bytes:
    """a XOR b, two chunks: ~10 µs with numpy (a dependency), ~400 µs with Python ints."""
    return bytes(_xor_array(a, b))


def _xor_array(a: bytes, b: bytes) -> Any:
    """a XOR b as a numpy array: zstd reads it in place (no bytes copy of each delta to compress)."""
    import numpy  # imported on first use: the CLI and nodes without snapshots never pay for it

    return numpy.bitwise_xor(numpy.frombuffer(a, numpy.uint64), numpy.frombuffer(b, numpy.uint64))


@dataclass(frozen=True)
class Base:
    """A plain body stored for an offset, and its chunk: what later chunks there are deltas on."""

    name: bytes
    body: bytes = field(repr=False)
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class Encoded:
    name: bytes
    body: bytes = field(repr=False)
    base: Base | None  # the base this body is a delta on


def encode(raw: bytes, base: Base | None, compressor: zstandard.ZstdCompressor) -> Encoded:
    """A non-zero chunk as a delta on `base` when that is small, else plain (a new base)."""
    if base is not None:
        if raw == base.raw:
            return Encoded(base.name, base.body, None)
        body = DELTA + base.name + compressor.compress(_xor_array(raw, base.raw))
        if len(body) <= DELTA_LIMIT:
            return Encoded(name_of(body), body, base)
    body = compressor.compress(raw)
    return Encoded(name_of(body), body, None)


class Decoder:
    """Reads chunks from stored bodies (name hex -> body), each checked against its name and
    decompressed to exactly one chunk, else SnapshotDamaged. Thread safe: bases are decoded once
    (or twice in a race, harmlessly) and kept, since several chunks may share one."""

    def __init__(self, bodies: Mapping[str, bytes]) -> None:
        self.bodies = bodies
        self.bases: dict[bytes, Base] = {}

    def body(self, name: bytes) -> bytes:
        body = self.bodies.get(name.hex())
        if body is None:
            raise SnapshotDamaged(f"chunk {name.hex()[:16]}… is missing")
        if name_of(body) != name:
            raise SnapshotDamaged(f"chunk {name.hex()[:16]}… does not match its hash")
        return body

    def base(self, name: bytes) -> Base:
        found = self.bases.get(name)
        if found is None:
            body = self.body(name)
            if body.startswith(DELTA):
                raise SnapshotDamaged(f"chunk {name.hex()[:16]}… is a delta used as a base")
            found = self.bases[name] = Base(name, body, _decompress(body, name))
        return found

    def chunk(self, name: bytes) -> tuple[bytes, Base | None]:
        """The chunk named `name` and the base later deltas of its offset use: itself when plain.
        (ZERO and no base for the zero chunk's name.)"""
        if name == ZERO_HASH:
            return ZERO, None
        known = self.bases.get(name)
        if known is not None:
            return known.raw, known
        body = self.body(name)
        base = base_of(body)
        if base is None:
            raw = _decompress(body, name)
            return raw, Base(name, body, raw)
        found = self.base(base)
        return xor(_decompress(body[_DELTA_HEAD:], name), found.raw), found


_LOCAL = threading.local()


def _decompress(frame: bytes, name: bytes) -> bytes:
    decompressor = getattr(_LOCAL, "decompressor", None)
    if decompressor is None:
        decompressor = _LOCAL.decompressor = zstandard.ZstdDecompressor()  # one per thread: ~10 µs each
    try:
        data = decompressor.decompress(frame, max_output_size=CHUNK)
    except zstandard.ZstdError as err:
        raise SnapshotDamaged(f"chunk {name.hex()[:16]}… does not decompress: {err}") from err
    if len(data) != CHUNK:
        raise SnapshotDamaged(f"chunk {name.hex()[:16]}… is not one chunk long")
    return data
