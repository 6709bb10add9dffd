"""The `samsa` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from samsa import config as broker_config
from samsa import lifecycle, logformat
from samsa.admin import acl_cli, txn_cli
from samsa.bench import guarantees as bench_guarantees
from samsa.broker.topics import DataDirError
from samsa.chaos import cli as chaos_cli
from samsa.console import cli as console_cli
from samsa.demo import cli as demo_cli
from samsa.log.storage import DataDirLocked
from samsa.ops import consume_cli, groups_cli, produce_cli, topics_cli
from samsa.protocol.apis import ADVERTISED, ApiKey
from samsa.security import cli as security_cli
from samsa.security import listeners
from samsa.server.run import StartError, raise_open_files_limit, serve
from samsa.server.server import BrokerServer
from samsa.sim import cli as sim_cli
from samsa.streams import cli as streams_cli
from samsa.tools import log_cli
from samsa.usage import (
    INTERRUPTED_EXIT,
    USAGE_EXIT,
    ArgumentParser,
    UsageError,
    catch_interrupts,
    interrupted,
    port_number,
)
from samsa.verify import cli as verify_cli

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 9092
log = logging.getLogger("samsa.cli")


def _read_config_file(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise UsageError(f"--config {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or exc}") from None
    try:
        return broker_config.parse_properties(text)
    except broker_config.ConfigError as exc:
        raise UsageError(f"--config {path}: {exc}") from None


def _serve_settings(args: argparse.Namespace) -> dict[str, str]:
    """The file's settings with the command line's over them: `--set`, and `--host`/`--port`,
    which, given, replace the file's listeners with one PLAINTEXT listener (listeners given
    with --set win over them, as before: --port is then unused)."""
    settings = _read_config_file(args.config) if args.config else {}
    try:
        assigned = broker_config.parse_assignments(args.set or [])
    except broker_config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.host is not None or args.port is not None:
        settings.pop("listeners", None)
        settings.pop("advertised.listeners", None)
    return {**settings, **assigned}


def _serve(args: argparse.Namespace) -> int:
    settings = _serve_settings(args)
    try:
        config = broker_config.load(settings)
    except broker_config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    ignored = broker_config.not_applicable(settings)
    if ignored:
        log.warning(
            "settings for a cluster, not applicable to samsa's single node, accepted and "
            "ignored: %s",
            ", ".join(ignored),
        )
    args.data_dir = args.data_dir or config.data_dir
    args.host = DEFAULT_HOST if args.host is None else args.host
    args.port = DEFAULT_PORT if args.port is None else args.port
    raise_open_files_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lifecycle.stopper(stop, sig, received))
        # Started by another samsa command: stop when it is gone, even after its kill -9.
        lifecycle.watch_parent(lambda: loop.call_soon_threadsafe(stop.set))

        def ready(server: BrokerServer) -> None:
            endpoint = server.broker.endpoint
            host = listeners.listener_specs(config, args.host, args.port)[0].host or "0.0.0.0"
            print(
                f"samsa broker listening on {host}:{server.port} "
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

    received: list[int] = []
    try:
        asyncio.run(main())
    except (DataDirLocked, DataDirError, StartError, broker_config.ConfigError) as exc:
        # ConfigError here: listener or TLS settings that only binding shows unusable.
        raise UsageError(str(exc)) from exc
    if signal.SIGINT in received:  # stopped cleanly, and says so as a JVM does: exit 130
        raise KeyboardInterrupt
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
    "console": console_cli,
    "bench": bench_guarantees,
}


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


SERVE_DESCRIPTION = """Run a broker. Settings have Kafka's names (docs/configuration.md lists
them): from a properties file (--config; a stock Kafka server.properties works) and --set, which
wins over the file. --data-dir, --host and --port, when given, win over the file's log.dirs and
listeners; --host/--port then make one PLAINTEXT listener, in place of the file's listeners and
advertised.listeners (listeners given with --set win over --host/--port)."""


def _add_serve(commands: Any) -> None:
    serve_parser = commands.add_parser("serve", help="run a broker", description=SERVE_DESCRIPTION)
    serve_parser.add_argument(
        "--data-dir",
        help="the broker's data dir (default: log.dirs or log.dir, else ./data)",
    )
    serve_parser.add_argument(
        "--host",
        help=f"the address to listen on (default: {DEFAULT_HOST}, or the listeners setting)",
    )
    serve_parser.add_argument(
        "--port",
        type=port_number,
        help=f"the port to listen on, 0 for any free one (default: {DEFAULT_PORT}, or the "
        "listeners setting)",
    )
    serve_parser.add_argument(
        "--config", metavar="FILE", help="a Kafka-style properties file (default: none)"
    )
    serve_parser.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="a broker setting by its Kafka name, over the file's (repeatable; default: none)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="samsa", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback instead of a one-line error"
    )
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default=None,
        help="DEBUG, INFO, WARNING, ERROR (default: INFO for serve, WARNING otherwise)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands)
    for module in dict.fromkeys(SUBCOMMANDS.values()):  # a module may add several
        module.register(commands)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would name the top-level parser, not the command
        print(f"samsa {args.command}: unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
        return USAGE_EXIT
    # A server says what it found at start-up (recovery) and what it does; tools stay quiet.
    level = args.log_level or ("INFO" if args.command == "serve" else "WARNING")
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logformat.one_line(args.debug)
    catch_interrupts()
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
    except Exception:
        if args.debug or not interrupted():
            raise
        print(f"samsa {args.command}: interrupted", file=sys.stderr)  # what Ctrl-C broke
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
