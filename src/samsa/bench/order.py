"""Is a run's rate set by what ran before it? The check behind `RECYCLING_SETTINGS`.

    python -m samsa.bench.order [--runs N] [--seconds S] [--file-mb MB] [--json]

1. The page cache's fill rate: a file written in 64 KB writes, `fdatasync` every 1 MB, timed
   per 200 MB, then deleted. On a machine whose unused memory costs nothing to touch the rate is
   flat; on a VM whose free pages go back to the host (virtio-balloon free page reporting) it
   drops once the pages freed last are used up.
2. The same idempotent producer (`samsa.bench.transactions.run_idempotent`, S seconds, a fresh
   topic each run) N times in a row against one `samsa serve`, first with samsa's defaults
   (every topic kept: the broker's page cache only grows), then with `RECYCLING_SETTINGS` and
   each topic deleted after its run: records/s and the broker's CPU time per record of each
   run. If the runs of the first series slow down and those of the second do not, the order
   of runs set the rates, through the page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

from samsa.bench.broker import broker_process
from samsa.bench.fetch import cpu_seconds
from samsa.bench.transactions import RECYCLING_SETTINGS, on_fresh_topic, run_idempotent
from samsa.testing.topics import create_topic

WRITE_BYTES = 65536
SYNC_BYTES = 1 << 20
BLOCK_MB = 200


def page_cache_mb_s(total_mb: int) -> list[float]:
    """MB/s of each BLOCK_MB of one file written and synced as a broker writes a log."""
    chunk = os.urandom(WRITE_BYTES)
    rates = []
    with tempfile.TemporaryDirectory(prefix="samsa-bench-order-") as directory:
        fd = os.open(os.path.join(directory, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for _ in range(total_mb // BLOCK_MB):
                start = time.perf_counter()
                for index in range(BLOCK_MB * (1 << 20) // WRITE_BYTES):
                    os.write(fd, chunk)
                    if (index + 1) * WRITE_BYTES % SYNC_BYTES == 0:
                        os.fdatasync(fd)
                rates.append(BLOCK_MB / (time.perf_counter() - start))
        finally:
            os.close(fd)
    return rates


def idempotent_series(runs: int, seconds: float, recycling: bool) -> list[dict[str, float]]:
    """`runs` idempotent runs in a row on one broker: records/s and broker µs per record."""
    out = []
    with broker_process(*(RECYCLING_SETTINGS if recycling else ())) as broker:
        for index in range(runs):
            if recycling:
                result = on_fresh_topic(
                    broker, "order", lambda t: run_idempotent(broker.bootstrap, t, seconds)
                )
            else:
                topic = f"bench-order-{index}"
                create_topic(broker.bootstrap, topic, timeout_s=30)
                assert broker.process is not None
                before = cpu_seconds(broker.process.pid)
                result = run_idempotent(broker.bootstrap, topic, seconds)
                result.broker_cpu_s = cpu_seconds(broker.process.pid) - before
            out.append(
                {
                    "records_per_s": result.records_per_s,
                    "broker_us_per_record": result.broker_us_per_record or 0.0,
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.bench.order")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--file-mb", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"page_cache_mb_s": page_cache_mb_s(args.file_mb)}
    for name, recycling in (("samsa defaults", False), ("recycling", True)):
        out[name] = idempotent_series(args.runs, args.seconds, recycling)
    out["loadavg"] = os.getloadavg()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    rates = ", ".join(f"{rate:.0f}" for rate in out["page_cache_mb_s"])
    print(f"page cache, MB/s per {BLOCK_MB} MB written: {rates}")
    for name in ("samsa defaults", "recycling"):
        series = ", ".join(
            f"{run['records_per_s'] / 1000:.0f}k ({run['broker_us_per_record']:.2f} us)"
            for run in out[name]
        )
        print(f"idempotent runs in a row, {name}: {series}")
    print(f"load average at the end: {out['loadavg']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
