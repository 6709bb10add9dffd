"""A broker that is down is met by every reconnect of every client: the proxy's warning about it
comes once, then as a count, not once per connection (one kill -9 during `samsa verify` used to
log 1,483 identical lines in 2 s)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from samsa.chaos.proxy import ChaosProxy
from samsa.ratelog import INTERVAL_S
from samsa.testing.process import free_port

BURST = 200


def test_a_burst_of_unreachable_upstream_warnings_is_one_line_and_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now_ms = [0]
    dead = ("127.0.0.1", free_port())  # nothing listens there

    async def connect_and_wait_for_close(proxy: ChaosProxy) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        await reader.read()  # the proxy closes it: it cannot reach the upstream
        writer.close()

    async def main() -> None:
        proxy = ChaosProxy(dead, clock_ms=lambda: now_ms[0])
        await proxy.start()
        try:
            for _ in range(BURST):
                await connect_and_wait_for_close(proxy)
            now_ms[0] += int(INTERVAL_S * 1000) + 1
            await connect_and_wait_for_close(proxy)  # the next interval: the count comes out
        finally:
            await proxy.stop()
        assert proxy.stats().upstream_connect_failures == BURST + 1

    with caplog.at_level(logging.WARNING, logger="samsa.chaos"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "cannot reach upstream" in r.getMessage()]
    assert len(lines) == 2, lines
    assert f"({BURST - 1} more like this in the last {INTERVAL_S:g} s)" in lines[1]
