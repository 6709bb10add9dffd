"""`samsa streams run module:app`: run one instance of an application in this process.

    samsa streams run samsa.streams.examples.balances:app \
        [--bootstrap-servers HOST:PORT] [--processing-guarantee exactly_once] \
        [--instance-id ID] [--commit-interval-ms 100] [--static-membership] \
        [--no-create-topics] [--on-error fail|skip|dead_letter] [--dead-letter-topic NAME]
        [--state-dir DIR]
        [--consumer NAME=VALUE ...] [--producer NAME=VALUE ...]

Options override what the application itself sets. SIGTERM/SIGINT stop it cleanly: the open
transaction is committed (or aborted) and the instance leaves its group.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from samsa.usage import UsageError, positive_int


def register(subparsers: Any) -> None:
    """Add the `streams` subcommand to the `samsa` parser."""
    parser = subparsers.add_parser(
        "streams",
        help="run a stream processing application",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="streams_command", required=True)
    run_parser = commands.add_parser("run", help="run one instance of module:app")
    run_parser.add_argument("target", metavar="MODULE:APP")
    run_parser.add_argument("--bootstrap-servers")
    run_parser.add_argument(
        "--processing-guarantee", choices=["at_most_once", "at_least_once", "exactly_once"]
    )
    run_parser.add_argument("--instance-id")
    run_parser.add_argument("--commit-interval-ms", type=positive_int)
    run_parser.add_argument("--static-membership", action="store_true", default=None)
    run_parser.add_argument(
        "--group-protocol",
        choices=["classic", "consumer"],
        help="the consumer group protocol (consumer: KIP-848, the broker assigns)",
    )
    run_parser.add_argument(
        "--no-create-topics",
        dest="create_topics",
        action="store_false",
        default=None,
        help="do not create output and changelog topics (they exist, or are auto-created)",
    )
    run_parser.add_argument(
        "--on-error",
        choices=["fail", "skip", "dead_letter"],
        help="a record that cannot be deserialised, processed or produced: stop, skip it, or "
        "send it to the dead-letter topic",
    )
    run_parser.add_argument("--dead-letter-topic", help="default: <application id>-dlq")
    run_parser.add_argument(
        "--state-dir", help="keep stores on disk here, with checkpoints (default: in memory)"
    )
    run_parser.add_argument("--consumer", action="append", default=[], metavar="NAME=VALUE")
    run_parser.add_argument("--producer", action="append", default=[], metavar="NAME=VALUE")


def _assignments(items: list[str]) -> dict[str, str]:
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"expected NAME=VALUE, got {item!r}")
        found[name.strip()] = value.strip()
    return found


def load(target: str) -> Any:
    module_name, sep, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from None
    name = attribute if sep else "app"
    if not hasattr(module, name):
        raise UsageError(f"module {module_name!r} has no {name!r}")
    return getattr(module, name)


def run(args: argparse.Namespace) -> int:
    try:
        from samsa.streams.app import EXIT_INTERRUPTED, App
        from samsa.streams.errors import StreamsError
    except ImportError as exc:
        print(
            f"samsa streams: needs confluent-kafka (pip install 'samsa[clients]'): {exc}",
            file=sys.stderr,
        )
        return 2
    # `samsa --log-level` (default WARNING) would hide the runtime's progress lines.
    streams_log = logging.getLogger("samsa.streams")
    if streams_log.getEffectiveLevel() > logging.INFO:
        streams_log.setLevel(logging.INFO)
    app = load(args.target)
    if not isinstance(app, App):
        print(f"samsa streams: {args.target} is not a samsa.streams.App", file=sys.stderr)
        return 2
    overrides: dict[str, Any] = {}
    for option, setting in (
        ("bootstrap_servers", "bootstrap_servers"),
        ("processing_guarantee", "processing_guarantee"),
        ("instance_id", "instance_id"),
        ("commit_interval_ms", "commit_interval_ms"),
        ("static_membership", "static_membership"),
        ("group_protocol", "group_protocol"),
        ("create_topics", "create_topics"),
        ("on_error", "on_error"),
        ("dead_letter_topic", "dead_letter_topic"),
        ("state_dir", "state_dir"),
    ):
        value = getattr(args, option)
        if value is not None:
            overrides[setting] = value
    if args.consumer:
        overrides["consumer_config"] = {
            **app.settings.consumer_config,
            **_assignments(args.consumer),
        }
    if args.producer:
        overrides["producer_config"] = {
            **app.settings.producer_config,
            **_assignments(args.producer),
        }
    try:
        app.worker(**dict(overrides))  # the settings checked before anything starts
    except (ValueError, StreamsError) as exc:
        raise UsageError(str(exc)) from None
    code = int(app.run(**overrides))
    if code == EXIT_INTERRUPTED:  # stopped cleanly: the one line of every interrupted command
        raise KeyboardInterrupt
    return code
