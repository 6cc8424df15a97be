"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright) against a real
hypercorn serving a real AOS process. Screenshots go to $AONODE_SCREENSHOT_DIR (docs/ keeps two)
or to the test's temporary folder."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from aonode.engine.progress import PROGRESS
from tests.helpers.httpnode import HttpNode, http_node
from tests.helpers.token import TOKEN_LUA

pytestmark = pytest.mark.slow  # headless Chromium against a served node

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpNode]:
    with http_node(tmp_path_factory.mktemp("dashboard-node")) as running:
        yield running


@pytest.fixture(scope="module")
def pid(srv: HttpNode) -> str:
    with srv.client() as c:
        spawn = c.post("/~process@1.0/schedule", json={"Tags": [{"name": "On-Boot", "value": "Data"}], "Data": TOKEN_LUA})
        assert spawn.status_code == 200, spawn.text
        pid = spawn.json()["process"]
        c.post(f"/{pid}~process@1.0/schedule", json={"Tags": [{"name": "Action", "value": "Eval"}],
                                                    "Data": "print('hello from slot 1')"})
        assert c.get(f"/{pid}~process@1.0/now/cache/balances/alice").text == "100"
    return pid


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 860})
        yield context
        context.close()


@pytest.fixture()
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    yield page
    page.close()


def screenshot(page: Page, name: str, tmp_path: Path, full_page: bool = False) -> Path:
    folder = Path(os.environ.get("AONODE_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=full_page)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def test_the_process_list_shows_a_spawned_process_live(srv: HttpNode, pid: str, page: Page,
                                                      tmp_path: Path) -> None:
    page.goto(srv.url + "/")
    expect(page.locator("h1")).to_have_text("Node")
    expect(page.locator(".facts")).to_contain_text(srv.node.address)
    row = page.locator(f"tr[data-pid='{pid}']")
    expect(row).to_contain_text("aos2_0_6")
    # Spawned after the page loaded: it appears without a reload (the page polls).
    with srv.client() as c:
        later = c.post("/~process@1.0/schedule", json={"Tags": [{"name": "Name", "value": "later"}]}).json()["process"]
    expect(page.locator(f"tr[data-pid='{later}']")).to_be_visible(timeout=15_000)
    screenshot(page, "dashboard-processes.png", tmp_path)
    page.locator(f"a[href='/{pid}~process@1.0']").click()
    expect(page.locator("h1.pid")).to_have_text(pid)


def test_the_process_page_shows_a_patched_key_and_its_value(srv: HttpNode, pid: str, page: Page) -> None:
    page.goto(f"{srv.url}/{pid}~process@1.0")
    balances = page.locator(f"details[data-key='/{pid}~process@1.0/now/cache/balances']")
    balances.locator("summary .key").click()
    alice = balances.locator("li.leaf", has_text="alice")
    expect(alice.locator(".value")).to_have_text("100")
    read = alice.locator("a.read")
    expect(read).to_have_attribute("href", f"/{pid}~process@1.0/now/cache/balances/alice")
    expect(page.locator("li.leaf", has_text="ticker").locator(".value")).to_have_text("TKN")
    assert httpx.get(srv.url + read.get_attribute("href")).text == "100"  # the link is the plain read
    expect(page.locator("#slot-1 .output")).to_have_text("hello from slot 1")
    page.locator("details.definition summary").click()
    expect(page.locator("details.definition")).to_contain_text("On-Boot")


def test_a_message_sent_from_the_form_appears_in_the_schedule(srv: HttpNode, pid: str, page: Page,
                                                             tmp_path: Path) -> None:
    page.goto(f"{srv.url}/{pid}~process@1.0")
    current = srv.node.slot(pid)["current"]
    form = page.locator("form#send")
    form.locator("input[name=action]").fill("Eval")
    form.locator("textarea[name=data]").fill(
        "Send({Target = ao.id, Action = 'Mint', Recipient = 'carol', Quantity = '7'}) print('sent from the form')")
    form.locator("button[type=submit]").click()
    row = page.locator(f"#slot-{current + 1}")
    expect(row).to_contain_text("print('sent from the form')", timeout=30_000)
    expect(row.locator(".output")).to_contain_text("sent from the form", timeout=30_000)
    expect(page.locator("#send-status")).to_contain_text(f"slot {current + 1}")
    # The pushed Mint is computed by the next read; the page shows the new key once it is patched.
    httpx.get(f"{srv.url}/{pid}~process@1.0/now", timeout=60)
    carol = page.locator(f"li.leaf:has(a.read[href='/{pid}~process@1.0/now/cache/balances/carol'])")
    page.locator(f"details[data-key='/{pid}~process@1.0/now/cache/balances'] summary .key").click()
    expect(carol.locator(".value")).to_have_text("7", timeout=15_000)
    expect(page.locator("#current-slot")).to_have_text(str(current + 2), timeout=15_000)  # the head is live too
    screenshot(page, "dashboard-process.png", tmp_path, full_page=True)


def test_json_clients_get_json_on_the_same_paths(srv: HttpNode, pid: str) -> None:
    with srv.client() as c:
        root = c.get("/", headers={"accept": "application/json"})
        plain = c.get(f"/{pid}~process@1.0")
        fragment = c.get("/dashboard/processes")
    assert root.status_code == 404 and root.headers["content-type"] == "application/json"
    assert "error" in root.json()
    assert plain.status_code == 404 and "name an action" in plain.json()["error"]
    assert fragment.status_code == 200 and pid in fragment.text


def test_work_in_progress_shows_on_the_dashboard(srv: HttpNode, page: Page) -> None:
    with PROGRESS.task("fetching image test-dashboard", total=1000, unit="B") as task:
        task.advance(400)
        page.goto(srv.url + "/")
        bar = page.locator(".tasks .task", has_text="fetching image test-dashboard")
        expect(bar.locator("progress")).to_have_attribute("value", "400")
        task.advance(600)
        expect(bar.locator("progress")).to_have_attribute("value", "1000", timeout=15_000)  # live
    expect(bar).to_contain_text("done in", timeout=15_000)
