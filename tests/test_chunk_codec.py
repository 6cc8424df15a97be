"""How a chunk is stored (engine/wasm/chunk_codec.py): plain or as a small XOR delta on its offset's
base, named by the hash of the stored bytes, and read back only when every body matches its name."""
from __future__ import annotations

import os

import pytest
import zstandard

from aonode.engine.wasm.chunk_codec import (CHUNK, DELTA, DELTA_LIMIT, ZERO, ZERO_HASH, Base, Decoder,
                                            SnapshotDamaged, encode, name_of)

COMPRESSOR = zstandard.ZstdCompressor(level=1)


def heap_like(seed: int) -> bytes:
    """Compressible, like a Lua heap: repeated records with a few varying words."""
    rng = os.urandom(16) if seed < 0 else bytes([seed]) * 16
    return (rng + b"record-of-a-table" * 3 + bytes(13)) * (CHUNK // 80) + bytes(CHUNK % 80)


def with_words_changed(raw: bytes, *offsets: int) -> bytes:
    changed = bytearray(raw)
    for at in offsets:
        changed[at] ^= 0x5A
    return bytes(changed)


def as_base(raw: bytes) -> Base:
    encoded = encode(raw, None, COMPRESSOR)
    assert encoded.base is None and not encoded.body.startswith(DELTA)
    return Base(encoded.name, encoded.body, raw)


def test_a_small_change_is_stored_as_a_small_delta_that_reads_back() -> None:
    base = as_base(heap_like(1))
    raw = with_words_changed(base.raw, 8, 4000, 65000)
    delta = encode(raw, base, COMPRESSOR)
    assert delta.base == base and delta.body.startswith(DELTA) and len(delta.body) < 200
    assert delta.name == name_of(delta.body) != base.name
    decoder = Decoder({delta.name.hex(): delta.body, base.name.hex(): base.body})
    assert decoder.chunk(delta.name) == (raw, base)
    assert decoder.chunk(base.name) == (base.raw, base)
    assert Decoder({}).chunk(ZERO_HASH) == (ZERO, None)


def test_an_unchanged_chunk_is_its_base_and_a_rewritten_one_is_plain() -> None:
    base = as_base(heap_like(2))
    assert encode(base.raw, base, COMPRESSOR).name == base.name
    other = os.urandom(CHUNK)  # nothing in common with the base: the delta would exceed the limit
    rewritten = encode(other, base, COMPRESSOR)
    assert rewritten.base is None and not rewritten.body.startswith(DELTA) and len(rewritten.body) > DELTA_LIMIT
    assert Decoder({rewritten.name.hex(): rewritten.body}).chunk(rewritten.name)[0] == other


def test_damaged_missing_or_stacked_bodies_are_refused() -> None:
    base = as_base(heap_like(3))
    raw = with_words_changed(base.raw, 100)
    delta = encode(raw, base, COMPRESSOR)
    bodies = {delta.name.hex(): delta.body, base.name.hex(): base.body}
    flipped = bytearray(base.body)
    flipped[len(flipped) // 2] ^= 1
    with pytest.raises(SnapshotDamaged, match="does not match"):
        Decoder({**bodies, base.name.hex(): bytes(flipped)}).chunk(delta.name)
    with pytest.raises(SnapshotDamaged, match="missing"):
        Decoder({delta.name.hex(): delta.body}).chunk(delta.name)
    # A delta on a delta is never written; read back, it is damage, not a chain to follow.
    second = encode(with_words_changed(raw, 200), Base(delta.name, delta.body, raw), COMPRESSOR)
    with pytest.raises(SnapshotDamaged, match="delta used as a base"):
        Decoder({**bodies, second.name.hex(): second.body}).chunk(second.name)
    # A body that decompresses to something other than one chunk.
    short = COMPRESSOR.compress(b"x" * 100)
    with pytest.raises(SnapshotDamaged, match="one chunk"):
        Decoder({name_of(short).hex(): short}).chunk(name_of(short))
