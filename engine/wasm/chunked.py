"""Incremental, content-addressed snapshots: a memory is a list of 64 KiB chunk names plus host state.

Why: a message changes a few words in some pages of a ~100 MiB memory, so a snapshot that hashes and
compresses the whole memory costs what the memory weighs, not what changed. Here each instance keeps a
shadow copy of its previous two snapshots; taking the next one compares chunk by chunk at memcmp speed
and copies only the chunks that differ from both; encoding those (chunk_codec.py: a small XOR delta on
the offset's base, or plain zstd) and naming them run on a background thread. A body is stored once by
its hash, whatever process or slot holds it; the all-zero chunk never. The snapshot's name is the
sha256 of its manifest (size, host state, chunk names, the bases its deltas need); the whole-memory
sha256 is not needed. Restore checks the manifest against its name and every body against its hash
before the memory runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import zstandard

from aonode.engine.wasm.chunk_codec import CHUNK, ZERO, ZERO_HASH, ZSTD_LEVEL, Base, Decoder, SnapshotDamaged, encode
from aonode.engine.wasm.chunk_compare import BACK, differences
from aonode.engine.wasm.manifest_names import RECENT
from aonode.engine.wasm.snapshot import Snapshot

MAGIC = b"AOCHUNK2"  # then zstd; AOCHUNK1 (bodies named by their chunk's hash, no deltas) reads as damaged
MANIFEST_LEVEL = 3  # half of a manifest is the zero chunk's name over and over
MANIFEST_MAX = 1 << 26  # a manifest of 128 GiB of memory
_HEAD = struct.Struct("<QII")  # memory size, host-state length, number of bases

_BACKGROUND = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aonode-chunks")
_DECODE = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aonode-restore")
_BATCH = 64  # chunks per decoding task


def is_manifest(blob: bytes) -> bool:
    return blob.startswith(MAGIC[:-1])  # any version: an old one is then refused as damaged


@dataclass(frozen=True)
class Manifest:
    """What a snapshot is: its memory size, its host state (opaque bytes: clock, filesystem, ...), the
    name of each chunk's body in order, and the bases its delta bodies need (so that a store keeps
    alive every body a snapshot reads by looking at manifests alone)."""

    memory_size: int
    host_state: bytes
    hashes: tuple[bytes, ...] = field(repr=False)
    bases: tuple[bytes, ...] = field(default=(), repr=False)

    def to_bytes(self) -> bytes:
        return self._stored

    @cached_property
    def _stored(self) -> bytes:
        plain = (
            _HEAD.pack(self.memory_size, len(self.host_state), len(self.bases))
            + self.host_state
            + b"".join(self.hashes)
            + b"".join(self.bases)
        )
        return MAGIC + zstandard.ZstdCompressor(level=MANIFEST_LEVEL).compress(plain)

    @cached_property
    def name(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, name: str | None = None) -> Manifest:
        """Parse, checking the bytes against `name` when given (the name the store indexed)."""
        if name is not None and hashlib.sha256(data).hexdigest() != name:
            raise SnapshotDamaged(f"snapshot manifest does not match its name {name[:16]}…")
        if not data.startswith(MAGIC):
            raise SnapshotDamaged("not a chunked snapshot manifest of this version")
        try:
            plain = zstandard.ZstdDecompressor().decompress(data[len(MAGIC) :], max_output_size=MANIFEST_MAX)
        except zstandard.ZstdError as err:
            raise SnapshotDamaged(f"snapshot manifest does not decompress: {err}") from err
        if len(plain) < _HEAD.size:
            raise SnapshotDamaged("snapshot manifest is truncated")
        size, hlen, nbases = _HEAD.unpack_from(plain)
        body = plain[_HEAD.size + hlen :]
        count = size // CHUNK
        if size % CHUNK or len(body) != (count + nbases) * 32 or len(plain) < _HEAD.size + hlen:
            raise SnapshotDamaged("snapshot manifest is truncated")
        names = struct.unpack("32s" * (len(body) // 32), body)  # ~6x a slice per name
        return cls(size, plain[_HEAD.size : _HEAD.size + hlen], names[:count], names[count:])

    def host_dict(self) -> dict:
        return json.loads(self.host_state) if self.host_state else {}

    def stored_hashes(self) -> set[str]:
        """The bodies a store must hold for this snapshot (the zero chunk is implied)."""
        return {h.hex() for h in (*self.hashes, *self.bases) if h != ZERO_HASH}


def host_bytes(host_state: dict) -> bytes:
    return json.dumps(host_state, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Taken:
    """A snapshot as it leaves the background thread: its manifest and the bodies (hash hex -> bytes)
    no earlier snapshot of this instance held. `memory_sha256` is its name (MemoryImage's contract)."""

    manifest: Manifest
    new_chunks: Mapping[str, bytes] = field(repr=False)

    @property
    def memory_sha256(self) -> str:
        return self.manifest.name

    def to_bytes(self) -> bytes:
        return self.manifest.to_bytes()


@dataclass(frozen=True)
class Named:
    """What a snapshot's background work found: its chunk names, and the base of each delta."""

    hashes: tuple[bytes, ...]
    links: Mapping[bytes, bytes]  # name of a delta body -> name of its base
    held: frozenset[bytes]  # every body it needs stored: `held_by` (asked by the next two snapshots: made once)


def held_by(hashes: Iterable[bytes], links: Mapping[bytes, bytes]) -> frozenset[bytes]:
    """The bodies a snapshot of these chunk names and delta links needs stored: its chunks and their bases."""
    return frozenset((*hashes, *links.values()))


class Shadow:
    """The memory of this instance's previous snapshot and of the one before, as immutable chunk
    copies (all-zero chunks left out), the futures of their names (found in the background), and
    the base of each offset. Two, because Lua's collector flips the mark bits of every live object
    each cycle: much of a heap alternates between two contents, so a changed chunk often equals its
    state two snapshots ago, and then neither a copy nor an encoding is needed."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the previous snapshots: the next one stores every non-zero chunk, plain."""
        self.chunks: dict[int, bytes] = {}  # offset -> the chunk's bytes at the previous snapshot
        self.older: dict[int, bytes] = {}  # ... at the one before
        self.bases: dict[int, Base] = {}  # offset -> the plain body deltas there are made on
        self.size = self.address = 0  # of the memory the previous snapshot was taken of
        self.named: Future[Named] | None = None  # of the previous snapshot
        self.older_named: Future[Named] | None = None  # of the one before
        self.whole = True  # the next take compares every chunk, whatever was written (a reset or restore)

    def take(self, address: int, size: int, written: Iterable[int] | None = None) -> list[tuple[int, bytes, bool]]:
        """The chunks of the memory at `address` that differ from the previous snapshot, compared at
        memcmp speed: (offset, bytes, True when equal to the chunk two snapshots ago). A chunk that
        changed last time is compared with its older state first: it most likely flipped back.

        `written` (written_pages.py): the chunks written since the previous take; the others equal
        its memory: skipped, same result (a shadow's chunk is a new object only when its bytes differ
        from the one it replaces, so an unchanged one never looks flipped back). None, another memory
        (address, size) or a shadow not left by a take (reset, restored) compares every chunk."""
        changed = []
        chunks, older = self.chunks, self.older
        self.older = dict(chunks)
        whole = written is None or self.whole or (address, size) != (self.address, self.size)
        offsets = range(0, size, CHUNK) if whole or written is None else list(written)
        for offset, code in differences(address, offsets, chunks, older):
            back = code == BACK
            data = chunks[offset] = older[offset] if back else ctypes.string_at(address + offset, CHUNK)
            changed.append((offset, data, back))
        self.size, self.address, self.whole = size, address, False
        return changed


@dataclass(frozen=True)
class ShadowCopy:
    """The state of the snapshot just taken, from the shadow's immutable chunks: the instance's
    rollback checkpoint, with no compression at all."""

    chunks: Mapping[int, bytes]
    memory_size: int
    host_state: dict

    def write_into(self, target: memoryview, zero_from: int = 0) -> None:
        for offset in range(0, self.memory_size, CHUNK):
            data = self.chunks.get(offset)
            if data is None:
                if offset >= zero_from or bytes(target[offset : offset + CHUNK]) == ZERO:
                    continue
                data = ZERO
            target[offset : offset + CHUNK] = data


def _encode_changes(
    changed: list[tuple[int, bytes, bool]],
    size: int,
    host: bytes,
    bases: dict[int, Base],
    previous: Named,
    older: Named,
) -> tuple[Taken, Named]:
    """The manifest of a snapshot that differs from `previous` in `changed`, and the bodies neither
    it nor `older` stored (a base too, when a new delta needs one they no longer name)."""
    held_before, held_older = previous.held, older.held
    names = list(previous.hashes) + [ZERO_HASH] * (size // CHUNK - len(previous.hashes))
    links = {**older.links, **previous.links}
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    new: dict[str, bytes] = {}
    back = [offset // CHUNK for offset, _, flipped in changed if flipped]
    if back:  # most of a Lua heap's changes: as two snapshots ago, named as then (no Python loop)
        names_older = older.hashes
        for index, name in zip(back, map(names_older.__getitem__, back), strict=True):
            names[index] = name
    for offset, data, flipped in changed:
        if flipped:
            continue
        index = offset // CHUNK
        if data == ZERO:
            names[index] = ZERO_HASH
            continue
        encoded = encode(data, bases.get(offset), compressor)
        names[index] = encoded.name
        if encoded.name not in held_before and encoded.name not in held_older:
            new.setdefault(encoded.name.hex(), encoded.body)
        if encoded.base is None:
            bases[offset] = Base(encoded.name, encoded.body, data)
            continue
        links[encoded.name] = encoded.base.name
        if encoded.base.name not in held_before and encoded.base.name not in held_older:
            new.setdefault(encoded.base.name.hex(), encoded.base.body)
    hashes = tuple(names)
    named = frozenset(hashes)
    kept = {name: base for name, base in links.items() if name in named}  # links: ~100, names: ~2,000
    manifest = Manifest(size, host, hashes, tuple(sorted(set(kept.values()))))
    return Taken(manifest, new), Named(hashes, kept, named.union(kept.values()))  # held_by's, from the set made here


_NOTHING = Named((), {}, frozenset())


class PendingChunks:
    """A chunked snapshot being encoded, named and handed to `then` (to store it) in the background,
    after the previous snapshot of the same instance (its names are this one's base). Chunks the
    last two snapshots hold are not encoded again."""

    def __init__(
        self,
        shadow: Shadow,
        size: int,
        changed: list[tuple[int, bytes, bool]],
        host: bytes,
        then: Callable[[Taken], None] | None,
    ) -> None:
        previous, older, bases = shadow.named, shadow.older_named, shadow.bases
        self.changed = [offset for offset, _, _ in changed]  # the offsets that differ from the previous
        named_out: Future[Named] = Future()

        def make() -> Taken:
            try:
                taken, named = _encode_changes(
                    changed,
                    size,
                    host,
                    bases,
                    previous.result() if previous is not None else _NOTHING,
                    older.result() if older is not None else _NOTHING,
                )
                if then is not None:
                    RECENT.remember(taken.memory_sha256, named.held)  # before a collection may ask
                    then(taken)  # if storing fails, so do the snapshots chained on this one, until a reset
            except BaseException as err:
                named_out.set_exception(err)
                raise
            named_out.set_result(named)
            return taken

        self._future: Future[Taken] = _BACKGROUND.submit(make)
        shadow.named, shadow.older_named = named_out, previous

    def result(self) -> Taken:
        return self._future.result()

    def wait(self) -> None:
        self._future.result()

    def done(self) -> bool:
        return self._future.done()


def take(
    shadow: Shadow,
    address: int,
    size: int,
    host_state: dict,
    then: Callable[[Taken], None] | None = None,
    written: Iterable[int] | None = None,
) -> tuple[PendingChunks, ShadowCopy]:
    """Snapshot the memory at `address` (`written`: see Shadow.take): the compare and copy happen
    here, the rest in the background."""
    if shadow.named is not None and shadow.named.done() and shadow.named.exception() is not None:
        shadow.reset()  # the previous snapshot was not stored: this one stores every chunk
    try:
        changed = shadow.take(address, size, written)
    except BaseException:
        shadow.reset()  # half updated, its names no longer match its chunks
        raise
    pending = PendingChunks(shadow, size, changed, host_bytes(host_state), then)
    return pending, ShadowCopy(dict(shadow.chunks), size, dict(host_state))


@dataclass
class StoredSnapshot:
    """A stored chunked snapshot being restored: `write_into` checks each body against its name and
    decodes it (two threads; a damaged one raises SnapshotDamaged before any message runs), and
    fills `shadow` so the next snapshot of the restored instance is incremental."""

    manifest: Manifest
    chunks: Mapping[str, bytes] = field(repr=False)  # name hex -> body: every one the manifest needs
    shadow: Shadow = field(default_factory=Shadow)
    _filled: bool = False

    @property
    def memory_size(self) -> int:
        return self.manifest.memory_size

    @property
    def host_state(self) -> dict:
        return self.manifest.host_dict()

    @classmethod
    def load(cls, blob: bytes, name: str, fetch: Callable[[Iterable[str]], Mapping[str, bytes]]) -> StoredSnapshot:
        manifest = Manifest.from_bytes(blob, name)
        wanted = manifest.stored_hashes()
        chunks = fetch(sorted(wanted))
        missing = wanted - set(chunks)
        if missing:
            raise SnapshotDamaged(f"snapshot {name[:16]}… misses {len(missing)} of its chunks")
        return cls(manifest, chunks)

    def raw_chunks(self) -> Iterable[bytes]:
        """Each chunk in order, checked and decoded, one at a time."""
        decoder = Decoder(self.chunks)
        for name in self.manifest.hashes:
            yield decoder.chunk(name)[0]

    def raw(self) -> bytes:
        return b"".join(self.raw_chunks())

    def write_into(self, target: memoryview, zero_from: int = 0) -> None:
        decoder = Decoder(self.chunks)
        names = self.manifest.hashes

        def decode(start: int) -> list[tuple[bytes, Base | None]]:
            return [decoder.chunk(name) for name in names[start : start + _BATCH]]

        # Two threads decode batches ahead while this one writes the decoded ones in order.
        batches = [_DECODE.submit(decode, start) for start in range(0, len(names), _BATCH)]
        try:
            links = self._write(target, zero_from, batches)
        finally:
            for batch in batches:
                batch.cancel()  # after a damaged chunk: nothing more to decode
        if not self._filled:
            self.shadow.size = self.memory_size
            done: Future[Named] = Future()
            done.set_result(Named(names, links, held_by(names, links)))
            self.shadow.named = done
            self._filled = True

    def _write(
        self,
        target: memoryview,
        zero_from: int,
        batches: list[Future[list[tuple[bytes, Base | None]]]],
    ) -> dict[bytes, bytes]:
        """Write each decoded chunk into `target` as its batch arrives (and into the shadow on the first
        restore): the base of each delta, by name."""
        fill, names, links = not self._filled, self.manifest.hashes, {}
        for number, batch in enumerate(batches):
            for index, (data, base) in enumerate(batch.result(), number * _BATCH):
                offset = index * CHUNK
                if base is not None and base.name != names[index]:
                    links[names[index]] = base.name
                if data is ZERO:
                    if offset >= zero_from or bytes(target[offset : offset + CHUNK]) == ZERO:
                        continue
                target[offset : offset + CHUNK] = data
                if fill and data is not ZERO:
                    self.shadow.chunks[offset] = data
                    if base is not None:
                        self.shadow.bases[offset] = base
        return links


Restorable = Snapshot | StoredSnapshot | ShadowCopy  # what an instance can be started from
