"""Legacy-exception images are detected, translated once by real Binaryen, and then run in wasmtime."""
from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from aonode.engine.errors import ModuleError
from aonode.engine.wasm.transform import exnref

pytestmark = pytest.mark.slow  # wasm-opt translations


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.wasm_memory64 = True
    config.wasm_exceptions = True
    return wasmtime.Engine(config)


@pytest.fixture(scope="module")
def legacy_bytes(modules_dir: Path) -> bytes:
    return (modules_dir / "aos-2-pure-xs.wasm").read_bytes()


@pytest.fixture(scope="module")
def translated_once(legacy_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    cache = tmp_path_factory.mktemp("exnref-cache")
    return exnref.translate(legacy_bytes, cache), cache


def test_detects_legacy_image(legacy_bytes: bytes, modules_dir: Path) -> None:
    assert exnref.needs_translation(legacy_bytes)
    for name in ("aos2_0_6.wasm", "aos2_0_4_32.wasm", "test-ex.wasm", "test-64.wasm"):
        assert not exnref.needs_translation((modules_dir / name).read_bytes()), name


def test_untranslated_image_is_refused_by_wasmtime(legacy_bytes: bytes) -> None:
    with pytest.raises(wasmtime.WasmtimeError, match="legacy_exceptions"):
        wasmtime.Module(_engine(), legacy_bytes)


def test_translation_compiles_and_keeps_interface(legacy_bytes: bytes, translated_once: tuple[bytes, Path]) -> None:
    translated, cache = translated_once
    assert not exnref.needs_translation(translated)
    module = wasmtime.Module(_engine(), translated)
    exports = {e.name for e in module.exports}
    assert {"handle", "malloc", "memory"} <= exports
    assert exnref.cache_path(legacy_bytes, cache).read_bytes() == translated


def test_second_call_uses_cache_without_wasm_opt(
    legacy_bytes: bytes, translated_once: tuple[bytes, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    translated, cache = translated_once
    cached = exnref.cache_path(legacy_bytes, cache)
    mtime = cached.stat().st_mtime_ns
    monkeypatch.setenv("AONODE_WASM_OPT", str(tmp_path / "no-such-wasm-opt"))
    assert exnref.translate(legacy_bytes, cache) == translated
    assert cached.stat().st_mtime_ns == mtime


def test_missing_tool_is_a_clear_error(legacy_bytes: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AONODE_WASM_OPT", str(tmp_path / "no-such-wasm-opt"))
    with pytest.raises(ModuleError, match="wasm-opt.*npm ci.*AONODE_WASM_OPT"):
        exnref.translate(legacy_bytes, tmp_path / "cache")


def test_default_cache_dir_follows_aonode_home(
    legacy_bytes: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AONODE_HOME", str(tmp_path))
    assert exnref.cache_path(legacy_bytes).parent == tmp_path / "cache"
