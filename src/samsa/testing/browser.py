"""A real browser for tests and screenshots: Debian's headless Chromium driven by Playwright.

Playwright's own browser downloads are not used (`playwright install` needs the network); the
system's Chromium is launched with the flags that keep it offline and quiet.

    with chromium() as browser:
        page = browser.new_page()
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """Where the system's Chromium is (Debian's package `chromium`), or None."""
    return next((p for name in CHROMIUM_NAMES if (p := shutil.which(name))), None)


@contextmanager
def chromium(executable: str | None = None) -> Iterator[Browser]:
    path = executable or chromium_path()
    if path is None:
        raise FileNotFoundError("no Chromium on PATH (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()
