"""Shared fixtures: where the real AOS images are, and fresh data directories."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgcluster import pg, pg_dsn, store_spec  # noqa: F401  (fixtures: a throwaway PostgreSQL)

SHARED_MODULES = Path(__file__).resolve().parents[2] / "shared" / "modules"

if SHARED_MODULES.is_dir():
    # The catalogue finds the real images here first, so no test needs the network for them.
    os.environ.setdefault("AONODE_MODULE_PATH", str(SHARED_MODULES))


def image_path(filename: str) -> Path:
    """A real image from ../shared/modules, or fetched through the catalogue when that folder is absent."""
    local = SHARED_MODULES / filename
    if local.exists():
        return local
    from aonode.modules.catalogue import resolve

    return resolve(filename.removesuffix(".wasm")).path


@pytest.fixture(scope="session")
def modules_dir() -> Path:
    return SHARED_MODULES


@pytest.fixture(scope="session")
def aos_image() -> Path:
    return image_path("aos2_0_6.wasm")
