"""What every Kafka-style tool shares: the connection options, loading confluent-kafka, a bounded
first contact with the cluster, and the two outputs (a table for people, `--json` for scripts).

The options are Kafka's: `--bootstrap-server HOST:PORT` (samsa's other commands spell it
`--bootstrap`; both are accepted), `--command-config FILE` (client properties, e.g. SASL or TLS
settings, as Kafka's tools take them) and `--timeout` in seconds. Each tool asks the cluster for
its metadata first, within `--timeout`, so an unreachable bootstrap ends in one line and exit
status 1 instead of librdkafka's endless retries.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from samsa.config import ConfigError, parse_properties
from samsa.usage import UsageError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TIMEOUT_S = 10.0
# librdkafka logs every refused connection on stderr; the tools report one line instead.
QUIET = {"log_level": 0}


class ClusterError(Exception):
    """The cluster refused or did not answer: one line on stderr, exit status 1."""


def kafka() -> Any:
    """The confluent_kafka module, or a one-line UsageError naming the extra that brings it."""
    try:
        import confluent_kafka
    except ImportError:
        raise UsageError(
            "needs confluent-kafka: pip install 'samsa[clients]' (or confluent-kafka)"
        ) from None
    return confluent_kafka


def add_connection_options(
    parser: argparse.ArgumentParser,
    top_level: bool,
    timeout_help: str = f"how long to wait for the cluster (default {DEFAULT_TIMEOUT_S:g})",
) -> None:
    """`--bootstrap-server`, `--command-config`, `--timeout`, `--json`. Added to the command and
    to each action, so they may come before or after the action's name; an action's copy keeps
    no default (SUPPRESS), so it only overrides what was given before the action."""

    def default(value: object) -> object:
        return value if top_level else argparse.SUPPRESS

    parser.add_argument(
        "--bootstrap-server",
        "--bootstrap",
        dest="bootstrap",
        metavar="HOST:PORT",
        default=default(DEFAULT_BOOTSTRAP),
        help=f"the cluster to talk to (default {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--command-config",
        metavar="FILE",
        default=default(None),
        help="client properties (librdkafka names: security.protocol, sasl.mechanism, ...)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        default=default(DEFAULT_TIMEOUT_S),
        help=timeout_help,
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="one JSON document on stdout instead of tables",
    )


def add_command(
    subparsers: Any, name: str, help: str, doc: str | None, timeout_help: str | None = None
) -> argparse.ArgumentParser:
    """The `samsa NAME` parser, its module docstring as its description, with the connection
    options."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if timeout_help is None:
        add_connection_options(parser, top_level=True)
    else:
        add_connection_options(parser, top_level=True, timeout_help=timeout_help)
    return parser


def add_action(actions: Any, name: str, help: str) -> argparse.ArgumentParser:
    """An action (`samsa topics list`) that takes the connection options after its name too."""
    sub: argparse.ArgumentParser = actions.add_parser(name, help=help)
    add_connection_options(sub, top_level=False)
    return sub


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def assignments(items: Iterable[str], what: str) -> dict[str, str]:
    """`name=value` pairs, as `--config` and `--property` take them."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{what} takes NAME=VALUE, not {item!r}")
        out[name.strip()] = value
    return out


def client_config(args: argparse.Namespace, **extra: object) -> dict[str, object]:
    """librdkafka settings: the bootstrap, `--command-config`'s properties, then `extra`."""
    config: dict[str, object] = {"bootstrap.servers": args.bootstrap, **QUIET}
    if args.command_config:
        config.update(read_properties(args.command_config))
    config.update(extra)
    return config


def read_properties(path: str) -> dict[str, str]:
    """A client properties file, read as the broker reads server.properties."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_properties(f.read())
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        raise UsageError(f"--command-config {path}: {exc}") from None


def admin(args: argparse.Namespace) -> Any:
    """An AdminClient that has reached the cluster (metadata within `--timeout`)."""
    client = kafka().admin.AdminClient(client_config(args))
    reach(client, args)
    return client


def reach(client: Any, args: argparse.Namespace, topic: str | None = None) -> Any:
    """The cluster's metadata, or a ClusterError once `--timeout` has passed without it."""
    try:
        return client.list_topics(topic=topic, timeout=args.timeout)
    except kafka().KafkaException as exc:
        raise ClusterError(f"cannot reach {args.bootstrap}: {error_text(exc)}") from None


def error_text(exc: BaseException) -> str:
    """A KafkaException's message (its KafkaError's str), without the class wrapping."""
    error = exc.args[0] if exc.args else exc
    text = error.str() if hasattr(error, "str") else str(error)
    name = error.name() if hasattr(error, "name") else ""
    return f"{text} ({name})" if name and name not in text else str(text)


def wait_all(futures: Mapping[Any, Any], timeout_s: float) -> dict[Any, BaseException]:
    """Wait for every admin future; the errors by key (a timed-out future counts as one)."""
    errors: dict[Any, BaseException] = {}
    for key, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except Exception as exc:
            errors[key] = exc
    return errors


# ------------------------------------------------------------------------------ output
def print_json(document: object, out: TextIO) -> None:
    json.dump(document, out, indent=2, sort_keys=False)
    out.write("\n")


def print_table(
    out: TextIO, columns: Sequence[str], rows: Iterable[Sequence[object]], title: str = ""
) -> None:
    """Columns as Kafka's tools name them (upper case), through rich. Off a terminal no colour
    and no wrapping, so `grep` and `awk` see one row per line."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        *columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold"
    )
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    terminal = out.isatty()
    console = Console(file=out, width=None if terminal else 10_000, no_color=not terminal)
    if title:
        out.write(title + "\n")
    with console.capture() as captured:
        console.print(table)
    # Off a terminal rich pads every line to the console's width; trim that back.
    out.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")


def stdout(out: TextIO | None) -> TextIO:
    return out if out is not None else sys.stdout


def reporting(command: str, action: Any, args: argparse.Namespace, out: TextIO | None) -> int:
    """Run `action(args, out)`; a ClusterError becomes one line on stderr and exit status 1."""
    try:
        result: int = action(args, stdout(out))
    except ClusterError as exc:
        print(f"samsa {command}: {exc}", file=sys.stderr)
        return 1
    return result
