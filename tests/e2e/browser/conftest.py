"""Browser fixtures: Debian's Chromium driven by Playwright against a real local stack.

No browser is downloaded: Playwright's driver comes with its PyPI package and launches the system
`chromium` (`make test` installs it). Screenshots of the main states go to tests/e2e/artifacts/screenshots/
(git-ignored) for review.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from local.runtime import runtime
from tests.e2e.browser.pages import ChatPage
from tests.e2e.harness import REPO, LocalStackProcess

SCREENSHOTS = REPO / "tests" / "e2e" / "artifacts" / "screenshots"


def chromium_path() -> str:
    """The system Chromium, or a clear failure naming the make target that installs it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is not installed: run `make chromium` (Debian's package)", pytrace=False)
    return found


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless Chromium for one test.

    Not session-scoped: while Playwright's sync API is open its event loop counts as running in this
    thread, and the asyncio e2e tests that xdist may schedule next on the same worker would fail.
    """
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackProcess]:
    """One local stack for the tests of a module that leave it running (each uses its own user)."""
    if not runtime().installed:
        pytest.fail("the pinned OpenClaw runtime is missing: run `make openclaw` first", pytrace=False)
    stack = LocalStackProcess(tmp_path_factory.mktemp("browser") / "state").start()
    yield stack
    stack.stop()


@pytest.fixture
def new_user(shared_stack: LocalStackProcess, request: pytest.FixtureRequest) -> tuple[str, str]:
    """A fresh user of the shared stack (its own agent, history and settings), who turned Wake on open
    off: their agent sleeps until their first message, as these tests expect. With it on, every sign-in
    would boot an OpenClaw on the shared stack (minutes of CPU each on a small machine) whether the test
    talks to it or not; test_wake_on_open turns it back on for its user."""
    name = request.node.name.replace("_", "-")[:40].strip("-")
    username, password = f"{name}@example.com", "Browser-test-1!"
    shared_stack.create_user(username, password)
    token = shared_stack.login(username, password)
    off = shared_stack.api("PUT", "/api/settings", token, json={"wakeOnIntent": False})
    assert off.status_code == 200, off.text
    return username, password


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """New browser contexts (a fresh profile each); closed after the test."""
    made: list[BrowserContext] = []

    def make(**options: object) -> BrowserContext:
        options.setdefault("viewport", {"width": 1280, "height": 860})
        context = browser.new_context(**options)  # type: ignore[arg-type]
        context.set_default_timeout(20_000)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


@pytest.fixture
def screenshot() -> Callable[[ChatPage, str], Path]:
    """Save a full-page screenshot under the artifacts folder; the path."""

    def take(page: ChatPage, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.page.screenshot(path=str(path), full_page=True)
        return path

    return take
