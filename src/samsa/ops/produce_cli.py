"""`samsa produce`: one record per line of stdin, as Kafka's kafka-console-producer.sh.

    samsa produce --topic T [--key-separator :] [--header NAME=VALUE ...] [--acks all|1|0]
                  [--partition P] [--idempotent | --transactional-id ID]
                  [--property parse.key=true --property key.separator=: ...]
                  [--producer-property NAME=VALUE ...]

Each line is a record's value, or `KEY<separator>VALUE` with --key-separator (or the properties
parse.key=true and key.separator, Kafka's names; a line without the separator is refused, as
Kafka refuses it). Headers: --header NAME=VALUE adds one to every record; with
--property parse.headers=true each line starts with its own, `h1:v1,h2:v2<TAB>` (Kafka's
headers.delimiter, headers.separator and headers.key.separator change those characters).
The value (or key) equal to null.marker, if set, is sent as null.

--transactional-id sends the whole input in one transaction, committed at the end of input
(aborted if a record fails), so a read_committed consumer sees all of it or none of it.
--json prints one document at the end: how many records went to each partition and their
offsets. Exit status: 0 every record acknowledged, 1 some were not, 2 a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from samsa.ops import common
from samsa.usage import UsageError

ACKS = {"all": "all", "-1": "all", "1": "1", "0": "0"}


@dataclass(frozen=True, slots=True)
class LineFormat:
    """How a line splits into headers, key and value (Kafka's LineMessageReader properties)."""

    parse_key: bool = False
    key_separator: str = "\t"
    parse_headers: bool = False
    headers_delimiter: str = "\t"
    headers_separator: str = ","
    headers_key_separator: str = ":"
    null_marker: str | None = None
    ignore_error: bool = False


@dataclass(frozen=True, slots=True)
class Line:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def register(subparsers: Any) -> None:
    """Add the `produce` subcommand to the `samsa` parser."""
    parser = common.add_command(
        subparsers, "produce", "send lines of stdin as records (kafka-console-producer.sh)", __doc__
    )
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partition", type=int, help="(default: by key, as the client does)")
    parser.add_argument("--key-separator", help="each line is KEY<separator>VALUE")
    parser.add_argument(
        "--header", action="append", default=[], metavar="NAME=VALUE", help="on every record"
    )
    parser.add_argument("--acks", default="all", choices=sorted(ACKS), help="(default all)")
    txn = parser.add_mutually_exclusive_group()
    txn.add_argument("--idempotent", action="store_true", help="enable.idempotence=true")
    txn.add_argument("--transactional-id", help="send all of stdin in one transaction")
    parser.add_argument(
        "--property", action="append", default=[], metavar="NAME=VALUE", help="line parsing"
    )
    parser.add_argument("--producer-property", action="append", default=[], metavar="NAME=VALUE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO | None = None, lines: TextIO | None = None) -> int:
    source = lines if lines is not None else sys.stdin
    return common.reporting("produce", lambda a, o: _produce(a, o, source), args, out)


def line_format(args: argparse.Namespace) -> LineFormat:
    props = common.assignments(args.property, "--property")
    known = {
        "parse.key",
        "key.separator",
        "parse.headers",
        "headers.delimiter",
        "headers.separator",
        "headers.key.separator",
        "null.marker",
        "ignore.error",
    }
    unknown = sorted(set(props) - known)
    if unknown:
        raise UsageError(f"unknown --property {unknown[0]} (known: {', '.join(sorted(known))})")

    def flag(name: str) -> bool:
        value = props.get(name, "false").lower()
        if value not in ("true", "false"):
            raise UsageError(f"--property {name} is true or false, not {value!r}")
        return value == "true"

    key_separator = props.get("key.separator", "\t")
    parse_key = flag("parse.key")
    if args.key_separator is not None:
        parse_key, key_separator = True, args.key_separator
    fmt = LineFormat(
        parse_key=parse_key,
        key_separator=key_separator,
        parse_headers=flag("parse.headers"),
        headers_delimiter=props.get("headers.delimiter", "\t"),
        headers_separator=props.get("headers.separator", ","),
        headers_key_separator=props.get("headers.key.separator", ":"),
        null_marker=props.get("null.marker"),
        ignore_error=flag("ignore.error"),
    )
    for name, value in (
        ("key.separator", fmt.key_separator),
        ("headers.delimiter", fmt.headers_delimiter),
        ("headers.separator", fmt.headers_separator),
        ("headers.key.separator", fmt.headers_key_separator),
    ):
        if not value:
            raise UsageError(f"{name} must not be empty")
    return fmt


def parse_line(text: str, fmt: LineFormat, number: int) -> Line:
    """One line as Kafka's LineMessageReader reads it: [headers<delim>][key<sep>]value."""
    headers: list[tuple[str, bytes | None]] = []
    if fmt.parse_headers:
        part, sep, text = text.partition(fmt.headers_delimiter)
        if not sep:
            raise UsageError(f"line {number}: no headers delimiter {fmt.headers_delimiter!r}")
        for item in part.split(fmt.headers_separator) if part else []:
            name, hsep, value = item.partition(fmt.headers_key_separator)
            headers.append((name, _bytes(value, fmt) if hsep else None))
    key: bytes | None = None
    if fmt.parse_key:
        part, sep, rest = text.partition(fmt.key_separator)
        if sep:
            key, text = _bytes(part, fmt), rest
        elif not fmt.ignore_error:
            raise UsageError(f"line {number}: no key separator {fmt.key_separator!r}")
    return Line(key, _bytes(text, fmt), headers)


def _bytes(text: str, fmt: LineFormat) -> bytes | None:
    return None if fmt.null_marker is not None and text == fmt.null_marker else text.encode()


@dataclass(slots=True)
class Deliveries:
    """What the producer's delivery reports said, per partition."""

    first: dict[int, int] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)
    count: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def report(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors.append(error.str())
            return
        p, offset = message.partition(), message.offset()
        self.first.setdefault(p, offset)
        self.last[p] = offset
        self.count[p] = self.count.get(p, 0) + 1


def _produce(args: argparse.Namespace, out: TextIO, source: Iterable[str]) -> int:
    fmt = line_format(args)
    fixed_headers = [
        (name, value.encode())
        for name, value in common.assignments(args.header, "--header").items()
    ]
    kafka = common.kafka()
    settings: dict[str, object] = {
        "acks": ACKS[args.acks],
        **common.assignments(args.producer_property, "--producer-property"),
    }
    if args.idempotent:
        settings["enable.idempotence"] = True
    if args.transactional_id:
        settings["transactional.id"] = args.transactional_id
    producer = kafka.Producer(common.client_config(args, **settings))
    metadata = common.reach(producer, args, args.topic)
    topic = metadata.topics.get(args.topic)
    if topic is None or topic.error is not None:
        reason = common.error_text(kafka.KafkaException(topic.error)) if topic else "unknown"
        raise common.ClusterError(f"topic {args.topic}: {reason}")
    if args.transactional_id:
        try:
            producer.init_transactions(args.timeout)
            producer.begin_transaction()
        except kafka.KafkaException as exc:
            raise common.ClusterError(
                f"cannot begin a transaction: {common.error_text(exc)}"
            ) from None
    deliveries = Deliveries()
    partition = {} if args.partition is None else {"partition": args.partition}
    for number, raw in enumerate(source, start=1):
        line = parse_line(raw.rstrip("\r\n"), fmt, number)
        while True:
            try:
                producer.produce(
                    args.topic,
                    value=line.value,
                    key=line.key,
                    headers=fixed_headers + line.headers or None,
                    on_delivery=deliveries.report,
                    **partition,
                )
                break
            except BufferError:  # the client's queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(args.timeout)
    if remaining:
        deliveries.errors.append(f"{remaining} records not acknowledged within --timeout")
    if args.transactional_id:
        _finish(producer, deliveries, args.timeout)
    sent = sum(deliveries.count.values())
    if args.json:
        common.print_json(
            {
                "topic": args.topic,
                "records": sent,
                "partitions": [
                    {
                        "partition": p,
                        "records": deliveries.count[p],
                        "first_offset": deliveries.first[p],
                        "last_offset": deliveries.last[p],
                    }
                    for p in sorted(deliveries.count)
                ],
                "errors": deliveries.errors,
            },
            out,
        )
    if deliveries.errors:
        raise common.ClusterError(
            f"{len(deliveries.errors)} records not delivered: {deliveries.errors[0]}"
        )
    return 0


def _finish(producer: Any, deliveries: Deliveries, timeout_s: float) -> None:
    """Commit the transaction; abort it instead if any record failed."""
    kafka = common.kafka()
    try:
        if deliveries.errors:
            producer.abort_transaction(timeout_s)
            deliveries.errors.append("the transaction was aborted")
        else:
            producer.commit_transaction(timeout_s)
    except kafka.KafkaException as exc:
        deliveries.errors.append(f"the transaction failed: {common.error_text(exc)}")
