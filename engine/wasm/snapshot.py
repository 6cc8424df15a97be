"""A process's whole state: its linear memory (zstd) plus the few host counters that live outside it."""
from __future__ import annotations

import hashlib
import json
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import zstandard

MAGIC = b"AOSNAP1\n"
ZSTD_LEVEL = 1
PAGE = 65536  # a wasm page
RESTORE_CHUNK = 16 * PAGE
_ZERO_CHUNK = bytes(RESTORE_CHUNK)


def zero_from(memory: memoryview) -> int:
    """The offset (a RESTORE_CHUNK boundary) from which `memory` is all zero."""
    end = 0
    for start in range(0, len(memory), RESTORE_CHUNK):
        chunk = bytes(memory[start:start + RESTORE_CHUNK])
        if chunk != _ZERO_CHUNK[:len(chunk)]:
            end = start + len(chunk)
    return end


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
                if not (zero and (done >= zero_from or bytes(target[done:done + got]) == _ZERO_CHUNK[:got])):
                    for page in range(0, got, PAGE):
                        end = min(page + PAGE, got)
                        src = buf[page:end]
                        at = done + page
                        if src == _ZERO_CHUNK[:end - page] and (at >= zero_from
                                                                 or bytes(target[at:at + end - page]) == src):
                            continue
                        target[at:at + end - page] = src
                done += got
                if got < want:
                    break
        if done != self.memory_size:
            raise ValueError(f"snapshot decompressed to {done} bytes, expected {self.memory_size}")

    def to_bytes(self) -> bytes:
        header = json.dumps({"memory_sha256": self.memory_sha256, "memory_size": self.memory_size,
                             "host_state": self.host_state}, sort_keys=True).encode()
        return MAGIC + struct.pack("<I", len(header)) + header + self.compressed

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        if not data.startswith(MAGIC):
            raise ValueError("not an aonode snapshot")
        (hlen,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        header = json.loads(data[start:start + hlen])
        return cls(header["memory_sha256"], header["memory_size"], bytes(data[start + hlen:]),
                   header.get("host_state", {}))
