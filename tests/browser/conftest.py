"""Browser fixtures: our server on loopback (the e2e fixtures), Debian's chromium driven by Playwright.

Chromium is the system package at /usr/bin/chromium (no Playwright browser download); without it every browser
test skips and says why. Screenshots go to $CONSOLE_ARTIFACTS_DIR (default: a pytest temporary directory) and
their paths are listed at the end of the run.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from managed_agents.settings import ServerSettings
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Server

# the e2e fixtures (scripted model server, our server on loopback, the SDK client); server_settings is ours below
model_server = e2e.model_server
server = e2e.server
client = e2e.client


@pytest.fixture
def backend() -> str:
    """The console is tested on the embedded runtime; the API it calls runs on both backends in tests/e2e."""
    return "embedded"


CHROMIUM = os.environ.get("CONSOLE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS: list[Path] = []


def chromium_path() -> str | None:
    if os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    # short streams: the console must reconnect (re-open, re-list, de-duplicate) several times per test
    return ServerSettings(
        data_dir=str(tmp_path / "data"),
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
        sse_ping_seconds=0.5,
        sse_max_seconds=2.0,
    )


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("CONSOLE_ARTIFACTS_DIR")
    path = Path(configured) if configured else tmp_path_factory.mktemp("console-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        pytest.skip(f"chromium not installed ({CHROMIUM} missing): apt-get install chromium to run the console tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@dataclass
class Console:
    """One browser tab on the console of one server."""

    page: Any
    server: Server
    artifacts: Path
    test_name: str
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.server.url}/console/"

    def open(self, fragment: str = "") -> None:
        self.page.goto(self.url + fragment)

    def sign_in(self, key: str | None = None, fragment: str = "#/sessions") -> None:
        self.open(fragment)
        self.page.get_by_label("API key").fill(key or self.server.admin_key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("navigation", name="Main").wait_for()

    def go(self, fragment: str) -> None:
        """Navigate and return once the console's hashchange handler has run (the old view is gone), so the next
        locator cannot act on the previous view's form."""
        self.page.evaluate(
            """f => new Promise(resolve => {
                if (location.hash === f) { resolve(); return; }
                window.addEventListener("hashchange", () => setTimeout(resolve, 0), { once: true });
                location.hash = f;
            })""",
            fragment,
        )

    def wait_trace(self, timeout: float = 15_000) -> None:
        self.page.wait_for_selector('main[data-trace-state="complete"]', timeout=timeout)

    def screenshot(self, name: str) -> Path:
        safe = re.sub(r"[^\w.-]+", "_", f"{self.test_name}-{name}")
        path = self.artifacts / f"{safe}.png"
        self.page.screenshot(path=str(path), full_page=True)
        SCREENSHOTS.append(path)
        print(f"screenshot: {path}")
        return path


@pytest.fixture
def console(browser: Any, server: Server, artifacts_dir: Path, request: pytest.FixtureRequest) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    c = Console(page, server, artifacts_dir, request.node.name)
    page.on("pageerror", lambda exc: c.page_errors.append(str(exc)))
    page.on("request", lambda req: c.requests.append(req.url))
    yield c
    context.close()
    # Then no page ever threw, and the API key never appeared in a URL
    assert c.page_errors == [], c.page_errors
    assert not [u for u in c.requests if server.admin_key in u]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCREENSHOTS:
        terminalreporter.section("console screenshots")
        for path in SCREENSHOTS:
            terminalreporter.write_line(str(path))
