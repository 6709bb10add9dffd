"""The console in a real browser: Debian's headless Chromium, driven by Playwright.

Each view loads; the aborted batch is drawn as aborted; the open transaction holds the LSO
marker; and the live view moves, without a reload, when a transaction commits. A missing
Chromium or Playwright skips loudly here and fails in CI (SAMSA_REQUIRE_ALL=1).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from samsa.console import example
from samsa.console.server import ConsoleServer
from samsa.testing.embedded import EmbeddedBroker
from samsa.testing.requirements import missing

VIEWS = ("/", "/topics/orders/0", "/transactions", "/producers", "/groups", "/groups/billing")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from samsa.testing.browser import chromium, chromium_path
    except ImportError as exc:
        missing(f"MISSING LIBRARY: playwright ({exc}); this test did NOT run")
    if chromium_path() is None:
        missing("MISSING TOOL: 'chromium' is not installed; this test did NOT run")
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    opened = browser.new_page()
    opened.set_default_timeout(10_000)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    opened.close()
    assert errors == [], f"script errors in the page: {errors}"


@pytest.mark.parametrize("path", VIEWS)
def test_each_view_loads(console: ConsoleServer, page: Any, path: str) -> None:
    response = page.goto(console.url.rstrip("/") + path)
    assert response.status == 200
    assert page.locator("main#live").is_visible()
    assert page.locator("#live-state").inner_text() == "live"  # the event stream connected


def test_aborted_batch_is_drawn_aborted(console: ConsoleServer, page: Any) -> None:
    page.goto(console.url + "topics/orders/0")
    aborted = page.locator('.timeline [data-base-offset="9"]')
    assert aborted.get_attribute("data-kind") == "aborted"
    assert "k-aborted" in (aborted.get_attribute("class") or "")
    assert aborted.evaluate("e => getComputedStyle(e).textDecorationLine") == "line-through"
    assert "transactional, aborted" in (aborted.get_attribute("title") or "")
    aborted.click()  # opens the batch's records
    page.wait_for_selector("#records")
    assert "Batch 9-10" in page.locator("#records h2").inner_text()


def test_open_transaction_holds_the_lso_marker(console: ConsoleServer, page: Any) -> None:
    page.goto(console.url + "topics/orders/0")
    lso = page.locator('.timeline [data-marker="lso"]')
    assert lso.get_attribute("data-offset") == "17"
    # Drawn immediately before the open transaction's first batch.
    following = lso.evaluate("e => e.nextElementSibling.dataset.kind")
    assert following == "open"
    assert page.locator('.timeline [data-kind="open"]').get_attribute("data-base-offset") == "17"


def test_live_view_moves_when_a_transaction_commits(
    broker: EmbeddedBroker, console: ConsoleServer, page: Any
) -> None:
    live = example.transactional(broker.bootstrap, "live")
    live.begin_transaction()
    example._send(live, "live", "live-1", "live-2")
    page.goto(console.url + "topics/live/0")
    lso = '.timeline [data-marker="lso"]'
    assert page.locator(lso).get_attribute("data-offset") == "0"
    assert page.locator('.timeline [data-kind="open"]').count() == 1
    live.commit_transaction(15)
    # No reload: the event stream says the log moved, the page swaps in its new <main>.
    page.wait_for_function(
        "() => document.querySelector('.timeline [data-kind=\"commit-marker\"]') !== null",
        timeout=10_000,
    )
    assert page.locator(lso).get_attribute("data-offset") == "3"
    assert page.locator('.timeline [data-kind="committed"]').count() == 1
    assert int(page.locator("main#live").get_attribute("data-refreshes") or 0) >= 1


def test_screenshots(console: ConsoleServer, browser: Any, tmp_path: Path) -> None:
    """`python -m samsa.console.screenshots` photographs the partition and transactions
    views (docs/console-*.png are made by it); here, of the test's console."""
    from samsa.console.screenshots import take

    written = take(browser, console.url, str(tmp_path))
    assert [Path(p).name for p in written] == ["console-partition.png", "console-transactions.png"]
    for path in written:
        data = Path(path).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        width, height = struct.unpack(">II", data[16:24])
        assert width == 1280 and height >= 600
