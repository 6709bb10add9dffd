"""`samsa topics`: list, describe, create, delete and alter topics, as Kafka's kafka-topics.sh
(and kafka-configs.sh for a topic's configs) do, through the Kafka protocol: it works against
any Kafka cluster as well as samsa.

    samsa topics list [--exclude-internal]
    samsa topics describe [--topic T ...]
    samsa topics create --topic T [--partitions N] [--config NAME=VALUE ...] [--if-not-exists]
    samsa topics delete --topic T [--topic T2 ...] [--if-exists]
    samsa topics alter --topic T [--add-config NAME=VALUE ...] [--delete-config NAME ...]
                                 [--partitions N]

Each takes --bootstrap-server HOST:PORT (or --bootstrap), --command-config FILE, --timeout
SECONDS and --json. `describe` shows each partition's leader, replicas and ISR, and the configs
set on the topic (those that differ from the broker's defaults). `alter` changes configs one by
one (IncrementalAlterConfigs), leaving the others as they were.

Exit status: 0 done, 1 the cluster refused or did not answer, 2 a usage error.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from samsa.ops import common
from samsa.usage import UsageError


def register(subparsers: Any) -> None:
    """Add the `topics` subcommand to the `samsa` parser."""
    parser = common.add_command(
        subparsers,
        "topics",
        "list, describe, create, delete and alter topics (kafka-topics.sh)",
        __doc__,
    )
    actions = parser.add_subparsers(dest="topics_command", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        return common.add_action(actions, name, help)

    listing = action("list", "topic names, one a line")
    listing.add_argument("--exclude-internal", action="store_true", help="leave out __* topics")
    describe = action("describe", "partitions, leaders and the configs set on each topic")
    describe.add_argument("--topic", action="append", default=[], help="(repeatable; default all)")
    describe.add_argument("--exclude-internal", action="store_true")
    create = action("create", "create a topic")
    create.add_argument("--topic", required=True)
    create.add_argument(
        "--partitions", type=int, default=-1, help="(default: the broker's num.partitions)"
    )
    create.add_argument(
        "--replication-factor", type=int, default=-1, help="(default: the broker's)"
    )
    create.add_argument("--config", action="append", default=[], metavar="NAME=VALUE")
    create.add_argument("--if-not-exists", action="store_true", help="no error if it exists")
    delete = action("delete", "delete topics")
    delete.add_argument("--topic", action="append", required=True, help="(repeatable)")
    delete.add_argument("--if-exists", action="store_true", help="no error if it does not exist")
    alter = action("alter", "set or delete a topic's configs, or add partitions")
    alter.add_argument("--topic", required=True)
    alter.add_argument("--add-config", action="append", default=[], metavar="NAME=VALUE")
    alter.add_argument("--delete-config", action="append", default=[], metavar="NAME")
    alter.add_argument("--partitions", type=int, help="the new, larger, partition count")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    actions = {
        "list": _list,
        "describe": _describe,
        "create": _create,
        "delete": _delete,
        "alter": _alter,
    }
    return common.reporting("topics", actions[args.topics_command], args, out)


# ---------------------------------------------------------------------------- list, describe
def _names(args: argparse.Namespace, client: Any) -> list[str]:
    metadata = common.reach(client, args)
    names = sorted(metadata.topics)
    if args.exclude_internal:
        names = [name for name in names if not name.startswith("__")]
    return names


def _list(args: argparse.Namespace, out: TextIO) -> int:
    names = _names(args, common.admin(args))
    if args.json:
        common.print_json({"topics": names}, out)
    else:
        out.writelines(f"{name}\n" for name in names)
    return 0


def describe_topics(
    args: argparse.Namespace, client: Any, names: list[str]
) -> list[dict[str, Any]]:
    """Each topic as a JSON-ready dict: id, partitions (leader, replicas, isr) and the configs
    set on it (source DYNAMIC_TOPIC_CONFIG, as kafka-topics.sh --describe shows them)."""
    kafka = common.kafka()
    admin = kafka.admin
    if not names:
        return []
    described = client.describe_topics(kafka.TopicCollection(names), request_timeout=args.timeout)
    resources = [admin.ConfigResource(admin.ResourceType.TOPIC, name) for name in names]
    configs = client.describe_configs(resources, request_timeout=args.timeout)
    topics: list[dict[str, Any]] = []
    for name in names:
        try:
            description = described[name].result(timeout=args.timeout)
        except Exception as exc:
            raise common.ClusterError(f"topic {name}: {common.error_text(exc)}") from None
        set_here: dict[str, str | None] = {}
        for resource, future in configs.items():
            if resource.name != name:
                continue
            try:
                entries = future.result(timeout=args.timeout)
            except Exception as exc:
                raise common.ClusterError(f"configs of {name}: {common.error_text(exc)}") from None
            set_here = {
                key: (None if entry.is_sensitive else entry.value)
                for key, entry in sorted(entries.items())
                if entry.source == admin.ConfigSource.DYNAMIC_TOPIC_CONFIG.value
            }
        topics.append(
            {
                "topic": name,
                "topic_id": str(description.topic_id),
                "internal": bool(description.is_internal),
                "partitions": [
                    {
                        "partition": p.id,
                        "leader": p.leader.id if p.leader is not None else None,
                        "replicas": [node.id for node in p.replicas],
                        "isr": [node.id for node in p.isr],
                    }
                    for p in sorted(description.partitions, key=lambda p: p.id)
                ],
                "configs": set_here,
            }
        )
    return topics


def _describe(args: argparse.Namespace, out: TextIO) -> int:
    client = common.admin(args)
    existing = _names(args, client)
    missing = [name for name in args.topic if name not in existing]
    if missing:
        raise common.ClusterError(f"no such topic: {', '.join(missing)}")
    topics = describe_topics(args, client, args.topic or existing)
    if args.json:
        common.print_json({"topics": topics}, out)
        return 0
    for topic in topics:
        configs = ",".join(
            f"{k}={'******' if v is None else v}" for k, v in topic["configs"].items()
        )
        title = (
            f"Topic: {topic['topic']}  TopicId: {topic['topic_id']}  "
            f"PartitionCount: {len(topic['partitions'])}  Configs: {configs or '-'}"
        )
        rows = [
            (
                p["partition"],
                p["leader"],
                ",".join(map(str, p["replicas"])),
                ",".join(map(str, p["isr"])),
            )
            for p in topic["partitions"]
        ]
        common.print_table(out, ("PARTITION", "LEADER", "REPLICAS", "ISR"), rows, title)
    return 0


# ----------------------------------------------------------------------- create, delete, alter
def _create(args: argparse.Namespace, out: TextIO) -> int:
    if args.partitions == 0 or args.partitions < -1:
        raise UsageError(f"--partitions must be 1 or more, not {args.partitions}")
    configs = common.assignments(args.config, "--config")
    kafka = common.kafka()
    client = common.admin(args)
    topic = kafka.admin.NewTopic(
        args.topic, args.partitions, args.replication_factor, config=configs
    )
    futures = client.create_topics(
        [topic], operation_timeout=args.timeout, request_timeout=args.timeout
    )
    errors = common.wait_all(futures, args.timeout)
    created = not errors
    if errors:
        error = errors[args.topic]
        if not (args.if_not_exists and _code(error) == kafka.KafkaError.TOPIC_ALREADY_EXISTS):
            raise common.ClusterError(f"cannot create {args.topic}: {common.error_text(error)}")
    if args.json:
        common.print_json({"topic": args.topic, "created": created}, out)
    elif created:
        out.write(f"Created topic {args.topic}.\n")
    else:
        out.write(f"Topic {args.topic} already exists.\n")
    return 0


def _delete(args: argparse.Namespace, out: TextIO) -> int:
    kafka = common.kafka()
    client = common.admin(args)
    futures = client.delete_topics(
        args.topic, operation_timeout=args.timeout, request_timeout=args.timeout
    )
    errors = common.wait_all(futures, args.timeout)
    missing = {
        name
        for name, error in errors.items()
        if _code(error) == kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    }
    refused = {name: e for name, e in errors.items() if not (args.if_exists and name in missing)}
    if refused:
        raise common.ClusterError(
            "; ".join(f"cannot delete {n}: {common.error_text(e)}" for n, e in refused.items())
        )
    deleted = [name for name in args.topic if name not in errors]
    if args.json:
        common.print_json({"deleted": deleted, "missing": sorted(missing)}, out)
    else:
        out.writelines(f"Deleted topic {name}.\n" for name in deleted)
    return 0


def _alter(args: argparse.Namespace, out: TextIO) -> int:
    settings = common.assignments(args.add_config, "--add-config")
    deletions = list(dict.fromkeys(args.delete_config))
    if not settings and not deletions and args.partitions is None:
        raise UsageError("alter needs --add-config, --delete-config or --partitions")
    both = sorted(set(settings) & set(deletions))
    if both:
        raise UsageError(f"both set and deleted: {', '.join(both)}")
    admin = common.kafka().admin
    client = common.admin(args)
    if args.partitions is not None:
        futures = client.create_partitions(
            [admin.NewPartitions(args.topic, args.partitions)],
            operation_timeout=args.timeout,
            request_timeout=args.timeout,
        )
        for error in common.wait_all(futures, args.timeout).values():
            raise common.ClusterError(
                f"cannot add partitions to {args.topic}: {common.error_text(error)}"
            )
    if settings or deletions:
        entries = [
            admin.ConfigEntry(name, value, incremental_operation=admin.AlterConfigOpType.SET)
            for name, value in settings.items()
        ] + [
            admin.ConfigEntry(name, None, incremental_operation=admin.AlterConfigOpType.DELETE)
            for name in deletions
        ]
        resource = admin.ConfigResource(
            admin.ResourceType.TOPIC, args.topic, incremental_configs=entries
        )
        futures = client.incremental_alter_configs([resource], request_timeout=args.timeout)
        for error in common.wait_all(futures, args.timeout).values():
            raise common.ClusterError(
                f"cannot alter configs of {args.topic}: {common.error_text(error)}"
            )
    if args.json:
        common.print_json(
            {
                "topic": args.topic,
                "set": settings,
                "deleted": deletions,
                "partitions": args.partitions,
            },
            out,
        )
    else:
        out.write(f"Altered topic {args.topic}.\n")
    return 0


def _code(error: BaseException) -> int | None:
    kafka_error: Any = error.args[0] if error.args else None
    return int(kafka_error.code()) if hasattr(kafka_error, "code") else None
