"""`samsa console`: watch transactions happen in the log, in a browser.

    samsa console [--bootstrap HOST:PORT] [--port 8080] [--poll-interval-ms 1000]
                  [--max-requests-per-second 5] [--allow-writes]
                  [--command-config FILE] [-X NAME=VALUE ...]

It speaks only the Kafka protocol, so it works against samsa and any Kafka 3.x/4.x cluster.
Read-only unless started with --allow-writes (which enables aborting a hanging transaction and
resetting an empty group's offsets). The client's security settings come in librdkafka's names
(security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ...), from a
properties file (--command-config, as Kafka's tools take it) or one by one (-X, as kcat does).
"""

from __future__ import annotations

import argparse
from typing import Any

from samsa import config as broker_config
from samsa.admin.security import ClientSecurity, SecuritySettingError
from samsa.console.live import INTERVAL_S_MIN
from samsa.usage import UsageError

REQUESTS_PER_S_MAX = 50.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "console",
        help="a web console that shows transactions in the log",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", metavar="HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1", help="the address to serve on")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--poll-interval-ms", type=int, default=1000, help="how often the log is polled"
    )
    parser.add_argument(
        "--max-requests-per-second",
        type=float,
        default=5.0,
        help="the most requests the console sends the cluster, however many browsers watch",
    )
    parser.add_argument(
        "--allow-writes",
        action="store_true",
        help="enable the actions that change state (abort a transaction, reset offsets)",
    )
    parser.add_argument("--command-config", metavar="FILE", help="client settings (properties)")
    parser.add_argument(
        "-X", dest="client_settings", action="append", metavar="NAME=VALUE", default=[]
    )


def settings_from(args: argparse.Namespace) -> Any:
    from samsa.console.server import ConsoleSettings

    client: dict[str, str] = {}
    try:
        if args.command_config:
            with open(args.command_config) as f:
                client.update(broker_config.parse_properties(f.read()))
        client.update(broker_config.parse_assignments(args.client_settings))
        security = ClientSecurity.from_settings(client)
    except (OSError, SecuritySettingError, broker_config.ConfigError) as exc:
        raise UsageError(str(exc)) from exc
    interval_s = args.poll_interval_ms / 1000
    if interval_s < INTERVAL_S_MIN:
        raise UsageError(f"--poll-interval-ms must be at least {int(INTERVAL_S_MIN * 1000)}")
    if not 1 <= args.max_requests_per_second <= REQUESTS_PER_S_MAX:
        raise UsageError(f"--max-requests-per-second must be from 1 to {REQUESTS_PER_S_MAX:g}")
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be from 0 to 65535")
    return ConsoleSettings(
        bootstrap=client.get("bootstrap.servers", args.bootstrap),
        host=args.host,
        port=args.port,
        poll_interval_s=interval_s,
        requests_per_s=args.max_requests_per_second,
        allow_writes=args.allow_writes,
        security=security,
    )


def run(args: argparse.Namespace) -> int:
    try:
        from samsa.console.server import ConsoleServer
    except ImportError as exc:  # pragma: no cover - the web dependencies are samsa's own
        raise UsageError(f"needs the console's web libraries: {exc}") from exc
    settings = settings_from(args)
    try:
        server = ConsoleServer(settings)
    except OSError as exc:
        raise UsageError(f"cannot serve on {settings.host}:{settings.port}: {exc}") from exc
    mode = "read-write" if settings.allow_writes else "read-only"
    print(f"samsa console for {settings.bootstrap} at {server.url} ({mode})", flush=True)
    server.serve_forever()
    return 0
