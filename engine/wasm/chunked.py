"""Incremental, content-addressed snapshots: a memory is a list of 64 KiB chunk hashes plus host state.

Why: a message changes a few pages of a ~100 MiB memory, so a snapshot that hashes and compresses the
whole memory costs what the memory weighs, not what changed. Here each instance keeps a shadow copy of
its previous snapshot; taking the next one compares chunk by chunk at memcmp speed and copies only the
chunks that differ; hashing (sha256) and zstd of those run on a background thread. A chunk is stored
once by its hash, whatever process or slot holds it; the all-zero chunk never. The snapshot's name is
the sha256 of its manifest (size, host state, chunk hashes); the whole-memory sha256 is not needed.
Restore checks the manifest against its name and every chunk against its hash before the memory runs.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import zstandard

from aonode.engine.errors import AONodeError
from aonode.engine.wasm.snapshot import Snapshot

CHUNK = 65536  # one wasm page: memory sizes are whole pages, so every chunk is full
MAGIC = b"AOCHUNK1"
ZSTD_LEVEL = 1
ZERO = bytes(CHUNK)
ZERO_HASH = hashlib.sha256(ZERO).digest()
_HEAD = struct.Struct("<QI")  # memory size, host-state length

_libc = ctypes.CDLL(None)
_libc.memcmp.restype = ctypes.c_int
_libc.memcmp.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)

_BACKGROUND = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aonode-chunks")


class SnapshotDamaged(AONodeError):
    """A stored snapshot does not match its name or its chunk hashes (or is incomplete)."""


def is_manifest(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


@dataclass(frozen=True)
class Manifest:
    """What a snapshot is: its memory size, its host state (opaque bytes: clock, filesystem, ...) and
    the hash of each chunk of its memory, in order."""

    memory_size: int
    host_state: bytes
    hashes: tuple[bytes, ...] = field(repr=False)

    def to_bytes(self) -> bytes:
        return MAGIC + _HEAD.pack(self.memory_size, len(self.host_state)) + self.host_state + b"".join(self.hashes)

    @property
    def name(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes, name: str | None = None) -> Manifest:
        """Parse, checking the bytes against `name` when given (the name the store indexed)."""
        if name is not None and hashlib.sha256(data).hexdigest() != name:
            raise SnapshotDamaged(f"snapshot manifest does not match its name {name[:16]}…")
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _HEAD.size:
            raise SnapshotDamaged("not a chunked snapshot manifest")
        size, hlen = _HEAD.unpack_from(data, len(MAGIC))
        start = len(MAGIC) + _HEAD.size
        body = data[start + hlen:]
        if size % CHUNK or len(body) != size // CHUNK * 32 or len(data) < start + hlen:
            raise SnapshotDamaged("snapshot manifest is truncated")
        hashes = tuple(body[i:i + 32] for i in range(0, len(body), 32))
        return cls(size, bytes(data[start:start + hlen]), hashes)

    def host_dict(self) -> dict:
        return json.loads(self.host_state) if self.host_state else {}

    def stored_hashes(self) -> set[str]:
        """The chunks a store must hold for this snapshot (the zero chunk is implied)."""
        return {h.hex() for h in self.hashes if h != ZERO_HASH}


def host_bytes(host_state: dict) -> bytes:
    return json.dumps(host_state, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Taken:
    """A snapshot as it leaves the background thread: its manifest and the chunks (hash hex -> zstd)
    no earlier snapshot of this instance held. `memory_sha256` is its name (MemoryImage's contract)."""

    manifest: Manifest
    new_chunks: Mapping[str, bytes] = field(repr=False)

    @property
    def memory_sha256(self) -> str:
        return self.manifest.name

    def to_bytes(self) -> bytes:
        return self.manifest.to_bytes()


class Shadow:
    """The memory of this instance's previous snapshot and of the one before, as immutable chunk
    copies (all-zero chunks left out), and the futures of their chunk hashes (named in the
    background). Two, because Lua's collector flips the mark bits of every live object each cycle:
    much of a heap alternates between two contents, so a changed chunk often equals its state two
    snapshots ago, and then neither a copy nor a hash is needed."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the previous snapshots: the next one stores every non-zero chunk."""
        self.chunks: dict[int, bytes] = {}  # offset -> the chunk's bytes at the previous snapshot
        self.older: dict[int, bytes] = {}  # ... at the one before
        self.size = 0
        self.hashes: Future[tuple[bytes, ...]] | None = None  # of the previous snapshot
        self.older_hashes: Future[tuple[bytes, ...]] | None = None  # of the one before

    def take(self, address: int, size: int) -> list[tuple[int, bytes, bool]]:
        """The chunks of the memory at `address` that differ from the previous snapshot, compared at
        memcmp speed: (offset, bytes, True when equal to the chunk two snapshots ago)."""
        changed = []
        chunks, older = self.chunks, self.older
        self.older = dict(chunks)
        for offset in range(0, size, CHUNK):
            before = chunks.get(offset)
            if _libc.memcmp(address + offset, ZERO if before is None else before, CHUNK):
                again = older.get(offset)
                back = again is not None and not _libc.memcmp(address + offset, again, CHUNK)
                data = again if back and again is not None else ctypes.string_at(address + offset, CHUNK)
                chunks[offset] = data
                changed.append((offset, data, back))
        self.size = size
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
                if offset >= zero_from or bytes(target[offset:offset + CHUNK]) == ZERO:
                    continue
                data = ZERO
            target[offset:offset + CHUNK] = data


class PendingChunks:
    """A chunked snapshot being named, compressed and handed to `then` (to store it) in the
    background, after the previous snapshot of the same instance (its hashes are this one's base).
    Chunks the last two snapshots hold are neither hashed nor compressed again."""

    def __init__(self, shadow: Shadow, size: int, changed: list[tuple[int, bytes, bool]], host: bytes,
                 then: Callable[[Taken], None] | None) -> None:
        previous, older = shadow.hashes, shadow.older_hashes
        hashes_out: Future[tuple[bytes, ...]] = Future()

        def make() -> Taken:
            try:
                base = list(previous.result()) if previous is not None else []
                before = older.result() if older is not None else ()
                held = set(base) | set(before)  # stored by the two snapshots this one follows
                base += [ZERO_HASH] * (size // CHUNK - len(base))
                compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
                new: dict[str, bytes] = {}
                for offset, data, back in changed:
                    index = offset // CHUNK
                    digest = before[index] if back else hashlib.sha256(data).digest()
                    base[index] = digest
                    if digest != ZERO_HASH and digest not in held and digest.hex() not in new:
                        new[digest.hex()] = compressor.compress(data)
                taken = Taken(Manifest(size, host, tuple(base)), new)
                if then is not None:
                    then(taken)  # if storing fails, so do the snapshots chained on this one, until a reset
            except BaseException as err:
                hashes_out.set_exception(err)
                raise
            hashes_out.set_result(taken.manifest.hashes)
            return taken

        self._future: Future[Taken] = _BACKGROUND.submit(make)
        shadow.hashes, shadow.older_hashes = hashes_out, previous

    def result(self) -> Taken:
        return self._future.result()

    def wait(self) -> None:
        self._future.result()

    def done(self) -> bool:
        return self._future.done()


def take(shadow: Shadow, address: int, size: int, host_state: dict,
         then: Callable[[Taken], None] | None = None) -> tuple[PendingChunks, ShadowCopy]:
    """Snapshot the memory at `address`: the compare and copy happen here, the rest in the background."""
    if shadow.hashes is not None and shadow.hashes.done() and shadow.hashes.exception() is not None:
        shadow.reset()  # the previous snapshot was not stored: this one stores every chunk
    changed = shadow.take(address, size)
    pending = PendingChunks(shadow, size, changed, host_bytes(host_state), then)
    return pending, ShadowCopy(dict(shadow.chunks), size, dict(host_state))


@dataclass
class StoredSnapshot:
    """A stored chunked snapshot being restored: `write_into` decompresses and verifies each chunk
    against its hash before writing it (a damaged one raises SnapshotDamaged before any message runs)
    and fills `shadow` so the next snapshot of the restored instance is incremental."""

    manifest: Manifest
    chunks: Mapping[str, bytes] = field(repr=False)  # hash hex -> zstd, every non-zero chunk
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
        """Each chunk in order, decompressed and checked."""
        decompressor = zstandard.ZstdDecompressor()
        for digest in self.manifest.hashes:
            if digest == ZERO_HASH:
                yield ZERO
                continue
            try:
                data = decompressor.decompress(self.chunks[digest.hex()], max_output_size=CHUNK)
            except zstandard.ZstdError as err:
                raise SnapshotDamaged(f"chunk {digest.hex()[:16]}… does not decompress: {err}") from err
            if len(data) != CHUNK or hashlib.sha256(data).digest() != digest:
                raise SnapshotDamaged(f"chunk {digest.hex()[:16]}… does not match its hash")
            yield data

    def raw(self) -> bytes:
        return b"".join(self.raw_chunks())

    def write_into(self, target: memoryview, zero_from: int = 0) -> None:
        fill = not self._filled
        for index, data in enumerate(self.raw_chunks()):
            offset = index * CHUNK
            if data is ZERO:
                if offset >= zero_from or bytes(target[offset:offset + CHUNK]) == ZERO:
                    continue
            target[offset:offset + CHUNK] = data
            if fill and data is not ZERO:
                self.shadow.chunks[offset] = data
        if fill:
            self.shadow.size = self.memory_size
            done: Future[tuple[bytes, ...]] = Future()
            done.set_result(self.manifest.hashes)
            self.shadow.hashes = done
            self._filled = True


Restorable = Snapshot | StoredSnapshot | ShadowCopy  # what an instance can be started from
