"""Screenshots of the console's partition and transactions views, for the docs.

    python -m samsa.console.screenshots [--out docs]

Starts an embedded broker, writes `samsa.console.example`'s log (committed, aborted and open
transactions, a fenced producer, a lagging group), serves the console, and photographs the
pages in Debian's headless Chromium (`samsa.testing.browser`).
"""

from __future__ import annotations

import argparse
import os
import sys

from playwright.sync_api import Browser, ViewportSize

from samsa.console import example
from samsa.console.server import ConsoleServer, ConsoleSettings
from samsa.testing.browser import chromium
from samsa.testing.embedded import embedded_broker

VIEWS = {
    "console-partition.png": f"topics/{example.ORDERS}/0?batch=12#timeline",
    "console-transactions.png": "transactions",
}
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


def take(browser: Browser, console_url: str, out_dir: str) -> list[str]:
    """Photograph each view of a running console into `out_dir`; the files written."""
    written = []
    page = browser.new_page(viewport=VIEWPORT)
    try:
        for name, path in VIEWS.items():
            page.goto(console_url + path)
            page.wait_for_selector("main#live")
            target = os.path.join(out_dir, name)
            page.screenshot(path=target, full_page=True)
            written.append(target)
    finally:
        page.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.console.screenshots")
    parser.add_argument("--out", default="docs", help="the directory to write the PNGs to")
    args = parser.parse_args(argv)
    with embedded_broker() as broker:
        built = example.build(broker.bootstrap)
        try:
            settings = ConsoleSettings(broker.bootstrap, port=0)
            with ConsoleServer(settings) as console, chromium() as browser:
                for path in take(browser, console.url, args.out):
                    print(path)
        finally:
            built.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
