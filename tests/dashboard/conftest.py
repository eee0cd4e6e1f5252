"""A real headless Chromium (Debian's package) driven by Playwright, one per session.

Playwright's own browser download is never used: the tests point it at /usr/bin/chromium
(CHROMIUM_PATH overrides) and are skipped, saying why, when no such binary is installed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("VIDHOOK_SCREENSHOTS") == "1"
DOCS = Path(__file__).resolve().parents[2] / "docs"

if not Path(CHROMIUM).exists():
    # Not an error: a machine without a browser can still run the rest of the suite. CI
    # installs Debian's chromium (.ci/run) so these run there.
    pytest.skip(
        f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM_PATH)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright  # noqa: E402


# Module scope, not session: while Playwright's sync API is open it holds an event loop on the
# main thread, and every later test's asyncio.run() would refuse to start. All browser tests
# live in one module, so this is still one browser for all of them.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """A page in a fresh browser context (its own sessionStorage), with what went wrong in it."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} @ {message.location.get('url', '')}")


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    found = Tab(page)
    page.on("console", found.on_console)
    page.on("pageerror", lambda error: found.errors.append(f"pageerror: {error}"))

    def confirm(dialog: Dialog) -> None:
        found.dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    yield found
    context.close()


def screenshot(page: Page, name: str) -> None:
    """Write docs/{name}.png when VIDHOOK_SCREENSHOTS=1 (not on every run: they are committed)."""
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)
