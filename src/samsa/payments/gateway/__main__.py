"""Run the gateway: python -m samsa.payments.gateway [--port 8080] [--db gateway.db|URL]

The limits on what clients can make it hold (`--threads`, `--connections-max`,
`--idle-timeout-s`) are described in docs/security.md."""

from __future__ import annotations

import argparse
import signal
import threading

from samsa.effects.db import open_database
from samsa.payments.gateway.faults import GatewayFaults
from samsa.payments.gateway.server import Gateway
from samsa.payments.gateway.serving import IDLE_TIMEOUT_S_DEFAULT, THREADS_DEFAULT


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m samsa.payments.gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--db", default="gateway.db", help="SQLite path or postgresql:// URL")
    parser.add_argument("--ttl-s", type=float, default=24 * 3600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail-before-charge", type=float, default=0.0, metavar="P")
    parser.add_argument("--timeout-after-charge", type=float, default=0.0, metavar="P")
    parser.add_argument("--slow", type=float, default=0.0, metavar="P")
    parser.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    parser.add_argument(
        "--connections-max",
        type=int,
        default=None,
        help="default: 1000, or half the open-files limit if less",
    )
    parser.add_argument("--idle-timeout-s", type=int, default=IDLE_TIMEOUT_S_DEFAULT)
    args = parser.parse_args()
    faults = GatewayFaults(
        args.seed,
        fail_before_charge_probability=args.fail_before_charge,
        timeout_after_charge_probability=args.timeout_after_charge,
        slow_probability=args.slow,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Gateway(
        open_database(args.db),
        faults=faults,
        ttl_ms=int(args.ttl_s * 1000),
        host=args.host,
        port=args.port,
        threads=args.threads,
        connections_max=args.connections_max,
        idle_timeout_s=args.idle_timeout_s,
    ) as gateway:
        print(f"gateway listening on {gateway.url}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
