"""Shared fixtures: where the real AOS images are, fresh data directories, a served --dev node."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers.images import SHARED_MODULES, image_path, use_shared_modules
from tests.helpers.pgcluster import pg, pg_dsn, store_spec  # noqa: F401  (fixtures: a throwaway PostgreSQL)

if TYPE_CHECKING:
    import httpx

    from tests.helpers.httpnode import HttpNode

use_shared_modules()


@pytest.fixture(scope="session")
def modules_dir() -> Path:
    return SHARED_MODULES


@pytest.fixture(scope="session")
def aos_image() -> Path:
    return image_path("aos2_0_6.wasm")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    """One --dev node behind a real hypercorn per test module that asks for it."""
    from tests.helpers.httpnode import http_node

    with http_node(tmp_path_factory.mktemp("dev-node"), dev=True) as running:
        yield running


@pytest.fixture(scope="module")
def c(srv: HttpNode) -> Iterator[httpx.Client]:
    with srv.client() as client:
        yield client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Two kinds of test are `slow` wherever they are, so `-m "not slow"` stays a quick loop: one on
    the throwaway PostgreSQL (the `pg`/`pg_dsn` fixtures, or `store_spec`'s postgresql half: initdb
    and lease timing take seconds; the quick loop runs the SQLite half), and one marked `peers`
    (each starts node and loads a JS library)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        uses_pg = bool({"pg", "pg_dsn"} & set(getattr(item, "fixturenames", ())))
        on_postgres = uses_pg or params.get("store_spec") == "postgresql"
        if on_postgres or item.get_closest_marker("peers"):
            item.add_marker(pytest.mark.slow)
    slow_first(items)


def slow_first(items: list[pytest.Item]) -> None:
    """Whole slow files run first, then files with some slow tests, then the rest, each file's tests in
    their order: the xdist workers take whole files (`--dist loadfile --no-loadscope-reorder`), so the
    run ends on short files instead of one worker finishing a long one alone while the other waits."""
    some_slow = {item.path for item in items if item.get_closest_marker("slow")}

    def tier(item: pytest.Item) -> int:
        marks = getattr(getattr(item, "module", None), "pytestmark", [])
        all_slow = any(mark.name == "slow" for mark in (marks if isinstance(marks, list) else [marks]))
        return 0 if all_slow else 1 if item.path in some_slow else 2

    items.sort(key=tier)  # stable: the order within a tier, and so within a file, is kept
