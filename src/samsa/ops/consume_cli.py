"""`samsa consume`: print a topic's records, as Kafka's kafka-console-consumer.sh.

    samsa consume --topic T [--group G] [--from-beginning] [--max-messages N] [--timeout S]
                  [--isolation read_committed|read_uncommitted] [--partition P [--offset O]]
                  [--print-key] [--key-separator SEP] [--print-headers] [--print-partition]
                  [--print-offset] [--print-timestamp] [--property print.key=true ...]
                  [--consumer-property NAME=VALUE ...] [--json]

Without --group it reads every partition (or --partition's) directly and commits nothing;
with --group it joins that group and commits what it printed when it stops. It starts at the
end of the log unless --from-beginning (or at --offset with --partition). It stops after
--max-messages records, or once no record has come for --timeout seconds (Kafka's
--timeout-ms), or on Ctrl-C; it waits for the cluster's first answer at most --timeout seconds
(10 when not given).

A line is the value, preceded, as Kafka's DefaultMessageFormatter writes them and each followed
by the key separator (a tab unless --key-separator), by `CreateTime:<ms>`, `Partition:<p>`,
`Offset:<o>`, the headers `k:v,k2:v2` and the key, for those asked for (--print-* or the
properties print.timestamp, print.partition, print.offset, print.headers, print.key,
key.separator). --json prints one JSON object per record instead (topic, partition, offset,
timestamp, key, value, headers), keys and values as UTF-8 text (invalid bytes replaced).
--isolation read_committed hides the records of aborted transactions and of open ones
(default read_uncommitted, as Kafka's console consumer).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from samsa.ops import common
from samsa.usage import UsageError

NO_MESSAGE_WAIT_S = 0.5
FORMAT_PROPERTIES = (
    "print.timestamp",
    "print.partition",
    "print.offset",
    "print.headers",
    "print.key",
    "print.value",
    "key.separator",
    "headers.separator",
    "headers.key.separator",
    "null.literal",
)


@dataclass(frozen=True, slots=True)
class Formatter:
    """Kafka's DefaultMessageFormatter."""

    print_timestamp: bool = False
    print_partition: bool = False
    print_offset: bool = False
    print_headers: bool = False
    print_key: bool = False
    print_value: bool = True
    key_separator: str = "\t"
    headers_separator: str = ","
    headers_key_separator: str = ":"
    null_literal: str = "null"

    def line(self, message: Any) -> str:
        fields: list[str] = []
        if self.print_timestamp:
            kind, ms = message.timestamp()
            fields.append(
                f"{TIMESTAMP_TYPES.get(kind, 'NO_TIMESTAMP')}:{ms}" if kind else "NO_TIMESTAMP"
            )
        if self.print_partition:
            fields.append(f"Partition:{message.partition()}")
        if self.print_offset:
            fields.append(f"Offset:{message.offset()}")
        if self.print_headers:
            headers = message.headers() or []
            fields.append(
                self.headers_separator.join(
                    f"{k}{self.headers_key_separator}{self._text(v)}" for k, v in headers
                )
                or "NO_HEADERS"
            )
        if self.print_key:
            fields.append(self._text(message.key()))
        if self.print_value:
            fields.append(self._text(message.value()))
        return self.key_separator.join(fields)

    def _text(self, data: bytes | None) -> str:
        return self.null_literal if data is None else _decode(data)


# confluent_kafka's TIMESTAMP_CREATE_TIME (1) and TIMESTAMP_LOG_APPEND_TIME (2), by Kafka's name.
TIMESTAMP_TYPES = {1: "CreateTime", 2: "LogAppendTime"}


def _decode(data: bytes | str) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def as_json(message: Any) -> dict[str, Any]:
    kind, ms = message.timestamp()
    key, value = message.key(), message.value()
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": ms if kind else None,
        "timestamp_type": TIMESTAMP_TYPES.get(kind),
        "key": None if key is None else _decode(key),
        "value": None if value is None else _decode(value),
        "headers": [[k, None if v is None else _decode(v)] for k, v in message.headers() or []],
    }


def register(subparsers: Any) -> None:
    """Add the `consume` subcommand to the `samsa` parser."""
    parser = common.add_command(
        subparsers,
        "consume",
        "print a topic's records (kafka-console-consumer.sh)",
        __doc__,
        timeout_help="stop once no record has come for this long",
    )
    parser.set_defaults(timeout=None)  # consume's --timeout is the idle time, unset by default
    parser.add_argument("--topic", action="append", required=True, help="(repeatable)")
    parser.add_argument("--group", help="join this group and commit (default: no group)")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--partition", type=int, help="only this partition (without --group)")
    parser.add_argument("--offset", help="earliest, latest or N: where --partition starts")
    parser.add_argument("--max-messages", type=int, metavar="N")
    parser.add_argument(
        "--isolation",
        choices=("read_uncommitted", "read_committed"),
        default="read_uncommitted",
    )
    for name in ("key", "headers", "partition", "offset", "timestamp"):
        parser.add_argument(f"--print-{name}", action="store_true")
    parser.add_argument("--key-separator", help="between the printed fields (default a tab)")
    parser.add_argument("--property", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--consumer-property", action="append", default=[], metavar="NAME=VALUE")
    parser.set_defaults(handler=run)


def formatter(args: argparse.Namespace) -> Formatter:
    props = common.assignments(args.property, "--property")
    unknown = sorted(set(props) - set(FORMAT_PROPERTIES))
    if unknown:
        raise UsageError(f"unknown --property {unknown[0]} (known: {', '.join(FORMAT_PROPERTIES)})")

    def flag(name: str, given: bool, default: bool = False) -> bool:
        if given:
            return True
        value = props.get(f"print.{name}", str(default).lower()).lower()
        if value not in ("true", "false"):
            raise UsageError(f"--property print.{name} is true or false, not {value!r}")
        return value == "true"

    return Formatter(
        print_timestamp=flag("timestamp", args.print_timestamp),
        print_partition=flag("partition", args.print_partition),
        print_offset=flag("offset", args.print_offset),
        print_headers=flag("headers", args.print_headers),
        print_key=flag("key", args.print_key),
        print_value=flag("value", False, default=True),
        key_separator=args.key_separator or props.get("key.separator", "\t"),
        headers_separator=props.get("headers.separator", ","),
        headers_key_separator=props.get("headers.key.separator", ":"),
        null_literal=props.get("null.literal", "null"),
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return common.reporting("consume", _consume, args, out)


def _check(args: argparse.Namespace) -> None:
    if args.max_messages is not None and args.max_messages < 1:
        raise UsageError(f"--max-messages must be 1 or more, not {args.max_messages}")
    if args.group and (args.partition is not None or args.offset is not None):
        raise UsageError("--partition and --offset read without a group; drop --group")
    if args.offset is not None and args.partition is None:
        raise UsageError("--offset needs --partition")
    if args.partition is not None and len(args.topic) > 1:
        raise UsageError("--partition takes one --topic")


def _start(args: argparse.Namespace) -> int:
    """The offset (or librdkafka's logical offset) an assigned partition starts from."""
    kafka = common.kafka()
    where = args.offset or ("earliest" if args.from_beginning else "latest")
    if where == "earliest":
        return int(kafka.OFFSET_BEGINNING)
    if where == "latest":
        return int(kafka.OFFSET_END)
    try:
        offset = int(where)
    except ValueError:
        raise UsageError(f"--offset is earliest, latest or a number, not {where!r}") from None
    if offset < 0:
        raise UsageError(f"--offset must be 0 or more, not {offset}")
    return offset


def _consume(args: argparse.Namespace, out: TextIO) -> int:
    _check(args)
    fmt = formatter(args)
    start = _start(args)
    kafka = common.kafka()
    settings: dict[str, object] = {
        "isolation.level": args.isolation,
        "auto.offset.reset": "earliest" if args.from_beginning else "latest",
        "enable.partition.eof": False,
        **common.assignments(args.consumer_property, "--consumer-property"),
    }
    if args.group:
        settings["group.id"] = args.group
    else:
        # librdkafka wants a group.id even to assign partitions; nothing is committed under it.
        settings.update({"group.id": "samsa-consume", "enable.auto.commit": False})
    reach_args = argparse.Namespace(
        **{**vars(args), "timeout": args.timeout or common.DEFAULT_TIMEOUT_S}
    )
    consumer = kafka.Consumer(common.client_config(args, **settings))
    try:
        metadata = common.reach(consumer, reach_args)
        for name in args.topic:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                raise common.ClusterError(f"no such topic: {name}")
        if args.group:
            consumer.subscribe(args.topic)
        else:
            partitions = [
                kafka.TopicPartition(name, p, start)
                for name in args.topic
                for p in sorted(metadata.topics[name].partitions)
                if args.partition is None or p == args.partition
            ]
            if not partitions:
                raise UsageError(f"{args.topic[0]} has no partition {args.partition}")
            consumer.assign(partitions)
        count = _loop(args, consumer, fmt, out)
    finally:
        consumer.close()  # with --group, commits what was printed (auto commit stores on poll)
    if not args.json:
        print(f"Processed a total of {count} messages", file=sys.stderr)
    return 0


def _fatal_codes() -> tuple[int, ...]:
    error = common.kafka().KafkaError
    return (
        error.TOPIC_AUTHORIZATION_FAILED,
        error.GROUP_AUTHORIZATION_FAILED,
        error.UNKNOWN_TOPIC_OR_PART,
    )


def _loop(args: argparse.Namespace, consumer: Any, fmt: Formatter, out: TextIO) -> int:
    count = 0
    idle_since = time.monotonic()
    while args.max_messages is None or count < args.max_messages:
        if args.timeout is not None and time.monotonic() - idle_since >= args.timeout:
            break
        message = consumer.poll(NO_MESSAGE_WAIT_S)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.fatal() or error.code() in _fatal_codes():
                raise common.ClusterError(error.str())
            continue  # librdkafka retries the rest (a broker away, a leader moving)
        idle_since = time.monotonic()
        count += 1
        if args.json:
            out.write(json.dumps(as_json(message)) + "\n")
        else:
            out.write(fmt.line(message) + "\n")
        out.flush()
    return count
