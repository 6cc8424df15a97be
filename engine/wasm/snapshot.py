"""A process's whole state: its linear memory (zstd) plus the few host counters that live outside it."""

from __future__ import annotations

import ctypes
import hashlib
import json
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import zstandard

MAGIC = b"AOSNAP1\n"
ZSTD_LEVEL = 1
PAGE = 65536  # a wasm page
RESTORE_CHUNK = 16 * PAGE
_ZERO_CHUNK = bytes(RESTORE_CHUNK)


_BACKGROUND = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aonode-snapshot")


_libc = ctypes.CDLL(None)
_libc.memcmp.restype = ctypes.c_int
_libc.memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_ZERO_ADDRESS = ctypes.cast(ctypes.c_char_p(_ZERO_CHUNK), ctypes.c_void_p).value  # _ZERO_CHUNK lives forever


@dataclass(frozen=True)
class SparseCopy:
    """A memory copied chunk by chunk, all-zero chunks left out: an AOS memory is mostly zero, and
    copying those pages costs a page fault per 4 KiB on both sides (~60 ms for 105 MiB, vs ~3 ms)."""

    size: int
    chunks: tuple[tuple[int, bytes], ...]  # (offset, bytes), offsets multiples of RESTORE_CHUNK

    @classmethod
    def of(cls, memory: memoryview, address: int) -> SparseCopy:
        """`memory` is the view of the live memory starting at `address`."""
        chunks = tuple((start, bytes(memory[start:end])) for start, end in nonzero_chunks(address, len(memory)))
        return cls(len(memory), chunks)

    def pieces(self):
        """The whole memory, in order, as bytes-like pieces (zero chunks from one shared buffer)."""
        at = 0
        for start, data in (*self.chunks, (self.size, b"")):
            while at < start:
                step = min(RESTORE_CHUNK, start - at)
                yield _ZERO_CHUNK if step == RESTORE_CHUNK else _ZERO_CHUNK[:step]
                at += step
            if data:
                yield data
                at += len(data)


class PendingSnapshot:
    """A snapshot hashed and compressed on a background thread from a sparse copy of the memory taken
    now, then handed to `then` (e.g. to store it) on that thread: the process goes on with its next
    messages meanwhile. `result()` waits for both."""

    def __init__(self, copy: SparseCopy, host_state: dict, then: Callable[[Snapshot], None] | None = None) -> None:
        self.error: Exception | None = None  # what `then` raised: the snapshot itself is still good

        def make() -> Snapshot:
            snap = Snapshot.from_pieces(copy.size, copy.pieces(), host_state)
            if then is not None:
                try:
                    then(snap)
                except Exception as err:  # noqa: BLE001 - reported by wait(), the checkpoint stays usable
                    self.error = err
            return snap

        self._future = _BACKGROUND.submit(make)

    def result(self) -> Snapshot:
        return self._future.result()

    def wait(self) -> None:
        """Until `then` has run; raises what it raised."""
        self._future.result()
        if self.error is not None:
            raise self.error

    def done(self) -> bool:
        return self._future.done()


def nonzero_chunks(address: int, size: int):
    """(start, end) of each RESTORE_CHUNK-sized piece of the `size` bytes at `address` that is not all zero."""
    for start in range(0, size, RESTORE_CHUNK):
        end = min(start + RESTORE_CHUNK, size)
        if _libc.memcmp(address + start, _ZERO_ADDRESS, end - start):
            yield start, end


def zero_from(address: int, size: int) -> int:
    """The offset (a RESTORE_CHUNK boundary) from which the `size` bytes at `address` are all zero."""
    return max((end for _, end in nonzero_chunks(address, size)), default=0)


@dataclass(frozen=True)
class Snapshot:
    """Named by `memory_sha256` (of the raw memory) so equal states have equal names across nodes."""

    memory_sha256: str
    memory_size: int
    compressed: bytes = field(repr=False)
    host_state: dict = field(default_factory=dict)

    @classmethod
    def from_memory(cls, raw: bytes | memoryview, host_state: dict, sha256: str | None = None) -> Snapshot:
        if sha256 is not None:
            digest = sha256
            compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)
        else:
            # Both release the GIL: hash on a second core while this one compresses.
            with ThreadPoolExecutor(max_workers=1) as pool:
                hashing = pool.submit(lambda: hashlib.sha256(raw).hexdigest())
                compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)
                digest = hashing.result()
        return cls(digest, len(raw), compressed, dict(host_state))

    @classmethod
    def from_pieces(cls, size: int, pieces, host_state: dict) -> Snapshot:
        """The same snapshot as from_memory over the concatenation of `pieces`."""
        pieces = list(pieces)  # references to the copied chunks and one shared zero chunk

        def sha256() -> str:
            digest = hashlib.sha256()
            for piece in pieces:
                digest.update(piece)
            return digest.hexdigest()

        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj(size=size)
        with ThreadPoolExecutor(max_workers=1) as pool:  # both release the GIL: hash on a second core
            hashing = pool.submit(sha256)
            out = [compressor.compress(piece) for piece in pieces]
            out.append(compressor.flush())
            digest = hashing.result()
        return cls(digest, size, b"".join(out), dict(host_state))

    def raw(self) -> bytes:
        data = zstandard.ZstdDecompressor().decompress(self.compressed, max_output_size=self.memory_size)
        if len(data) != self.memory_size:
            raise ValueError(f"snapshot decompressed to {len(data)} bytes, expected {self.memory_size}")
        return data

    def write_into(self, target: memoryview, zero_from: int = 0) -> None:
        """Decompress into `target` (a live linear memory) page by page, without a full copy, leaving
        pages that are zero on both sides untouched: a fresh instance's memory is mostly never-touched
        zero pages, and writing zeros over them would make every restored process resident in full.
        `target` is known to be zero from `zero_from` on, so those pages need not even be read."""
        if len(target) < self.memory_size:
            raise ValueError(f"target has {len(target)} bytes, snapshot needs {self.memory_size}")
        buf = bytearray(RESTORE_CHUNK)
        view = memoryview(buf)
        done = 0
        with zstandard.ZstdDecompressor().stream_reader(self.compressed) as reader:
            while done < self.memory_size:
                want = min(RESTORE_CHUNK, self.memory_size - done)
                got = 0
                while got < want:
                    n = reader.readinto(view[got:want])
                    if not n:
                        break
                    got += n
                zero = buf[:got] == _ZERO_CHUNK[:got]
                if not (zero and (done >= zero_from or bytes(target[done : done + got]) == _ZERO_CHUNK[:got])):
                    for page in range(0, got, PAGE):
                        end = min(page + PAGE, got)
                        src = buf[page:end]
                        at = done + page
                        if src == _ZERO_CHUNK[: end - page] and (
                            at >= zero_from or bytes(target[at : at + end - page]) == src
                        ):
                            continue
                        target[at : at + end - page] = src
                done += got
                if got < want:
                    break
        if done != self.memory_size:
            raise ValueError(f"snapshot decompressed to {done} bytes, expected {self.memory_size}")

    def to_bytes(self) -> bytes:
        header = json.dumps(
            {"memory_sha256": self.memory_sha256, "memory_size": self.memory_size, "host_state": self.host_state},
            sort_keys=True,
        ).encode()
        return MAGIC + struct.pack("<I", len(header)) + header + self.compressed

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        if not data.startswith(MAGIC):
            raise ValueError("not an aonode snapshot")
        (hlen,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        header = json.loads(data[start : start + hlen])
        return cls(
            header["memory_sha256"], header["memory_size"], bytes(data[start + hlen :]), header.get("host_state", {})
        )
