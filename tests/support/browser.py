"""Headless Debian Chromium driven by Playwright, for the browser tests.

`browser_session()` starts one Chromium (a module-scoped fixture shares it: starting one costs
a second or two); `new_page(browser)` yields a fresh context's page and the list of console
errors and CSP violations it saw. `browser_page()` does both for a single test.
`screenshot(page, name)` saves under var/screenshots/ (gitignored). A missing Chromium or
Playwright is `missing(...)`: a failure in CI, a skip elsewhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.components import missing

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@contextmanager
def browser_session() -> Iterator[Any]:
    """One headless Chromium for several pages (and tests)."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        missing("Chromium", f"{CHROMIUM} not found (Debian package `chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing("Playwright", str(exc))
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous and safe.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_page(
    browser: Any, *, width: int = 1400, height: int = 900
) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh context (its own cookies: its own login) and the problems it saw."""
    context = browser.new_context(viewport={"width": width, "height": height})
    problems: list[str] = []
    page = context.new_page()
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning") or "Refused" in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        yield page, problems
    finally:
        context.close()


@contextmanager
def browser_page(*, width: int = 1400, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    with browser_session() as browser, new_page(browser, width=width, height=height) as pair:
        yield pair


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Any, base_url: str, username: str, password: str = "password") -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
