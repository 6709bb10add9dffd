"""The `samsa` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from samsa import config as broker_config
from samsa import logformat
from samsa.admin import acl_cli, txn_cli
from samsa.bench import guarantees as bench_guarantees
from samsa.broker.topics import DataDirError
from samsa.chaos import cli as chaos_cli
from samsa.demo import cli as demo_cli
from samsa.log.storage import DataDirLocked
from samsa.ops import consume_cli, groups_cli, produce_cli, topics_cli
from samsa.protocol.apis import ADVERTISED, ApiKey
from samsa.security import cli as security_cli
from samsa.server.run import raise_open_files_limit, serve
from samsa.server.server import BrokerServer
from samsa.sim import cli as sim_cli
from samsa.streams import cli as streams_cli
from samsa.tools import log_cli
from samsa.usage import INTERRUPTED_EXIT, USAGE_EXIT, UsageError
from samsa.verify import cli as verify_cli


def _serve(args: argparse.Namespace) -> int:
    settings: dict[str, str] = {}
    if args.config:
        with open(args.config) as f:
            settings.update(broker_config.parse_properties(f.read()))
    settings.update(broker_config.parse_assignments(args.set or []))
    try:
        config = broker_config.load(settings)
    except broker_config.ConfigError as exc:
        print(f"samsa serve: {exc}", file=sys.stderr)
        return 2
    raise_open_files_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(server: BrokerServer) -> None:
            endpoint = server.broker.endpoint
            print(
                f"samsa broker listening on {args.host}:{server.port} "
                f"(bootstrap {endpoint.host}:{endpoint.port}, data dir {args.data_dir})"
            )
            if config.listeners:
                for name, port in server.ports().items():
                    advertised = server.broker.endpoint_for(name)
                    print(f"  listener {name} on port {port} ({advertised.host}:{advertised.port})")
            for key, versions in sorted(ADVERTISED.items()):
                print(f"  {ApiKey(key).name:<24} {versions.min}-{versions.max}")
            print("ready", flush=True)

        await serve(args.data_dir, args.host, args.port, config, stop, ready)
        print("samsa broker stopped cleanly", flush=True)

    try:
        asyncio.run(main())
    except (DataDirLocked, DataDirError, broker_config.ConfigError) as exc:
        # ConfigError here: listener or TLS settings that only binding shows unusable.
        print(f"samsa serve: {exc}", file=sys.stderr)
        return 2
    return 0


# Each adds its subcommand with `register(subparsers)` and runs it with `run(args)`.
SUBCOMMANDS: dict[str, Any] = {
    "chaos": chaos_cli,
    "txn": txn_cli,
    "acl": acl_cli,
    "demo": demo_cli,
    "streams": streams_cli,
    "sim": sim_cli,
    "verify": verify_cli,
    "log": log_cli,
    "users": security_cli,
    "certs": security_cli,
    "topics": topics_cli,
    "groups": groups_cli,
    "produce": produce_cli,
    "consume": consume_cli,
    "bench": bench_guarantees,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="samsa", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback instead of a one-line error"
    )
    parser.add_argument(
        "--log-level",
        default=None,
        help="DEBUG, INFO, WARNING, ERROR (default: INFO for serve, WARNING otherwise)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run a broker")
    serve_parser.add_argument("--data-dir", default="data")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=9092)
    serve_parser.add_argument("--config", help="a Kafka-style properties file")
    serve_parser.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="a broker setting by its Kafka name (repeatable)",
    )
    for module in dict.fromkeys(SUBCOMMANDS.values()):  # a module may add several
        module.register(commands)
    args = parser.parse_args(argv)
    # A server says what it found at start-up (recovery) and what it does; tools stay quiet.
    level = args.log_level or ("INFO" if args.command == "serve" else "WARNING")
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logformat.one_line(args.debug)
    try:
        if args.command == "serve":
            return _serve(args)
        result: int = SUBCOMMANDS[args.command].run(args)
        return result
    except UsageError as exc:
        if args.debug:
            raise
        print(f"samsa {args.command}: {exc}", file=sys.stderr)
        return USAGE_EXIT
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"samsa {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
