"""`samsa groups`: list, describe, reset the offsets of and delete consumer groups, as Kafka's
kafka-consumer-groups.sh does, through the Kafka protocol (any Kafka cluster as well as samsa).

    samsa groups list
    samsa groups describe --group G [--group G2 ...] | --all-groups
    samsa groups reset-offsets --group G (--topic T[:P,P] ... | --all-topics)
        (--to-earliest | --to-latest | --to-datetime ISO | --shift-by N | --to-offset N)
        [--dry-run | --execute]
    samsa groups delete --group G [--group G2 ...]

Each takes --bootstrap-server HOST:PORT (or --bootstrap), --command-config FILE, --timeout
SECONDS and --json. `list` shows each group's state and type (classic, or consumer for KIP-848's
protocol). `describe` shows the members (client id, host, assignment) and, per partition, the
committed offset, the log end offset and the lag between them. `reset-offsets` prints its plan
and changes nothing unless given --execute; like Kafka it refuses a group with members (stop
the consumers first). `--to-datetime` takes an ISO time (2026-12-06T07:00:00, local time unless
it names a zone, as Kafka's tool reads it).

Exit status: 0 done, 1 the cluster refused or did not answer, 2 a usage error.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any, TextIO

from samsa.ops import common, reset
from samsa.usage import UsageError

# ConsumerGroupState's names, as Kafka prints a group's state.
STATES = {
    "STABLE": "Stable",
    "EMPTY": "Empty",
    "DEAD": "Dead",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "UNKNOWN": "Unknown",
}
# Where Kafka allows a reset: nobody is consuming (Empty), or the group has no state (Dead).
RESETTABLE = ("Empty", "Dead")


def register(subparsers: Any) -> None:
    """Add the `groups` subcommand to the `samsa` parser."""
    parser = common.add_command(
        subparsers, "groups", "list, describe, reset offsets of and delete consumer groups", __doc__
    )
    actions = parser.add_subparsers(dest="groups_command", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        return common.add_action(actions, name, help)

    action("list", "every group with its state and type")
    describe = action("describe", "members, committed offsets and lag per partition")
    which = describe.add_mutually_exclusive_group(required=True)
    which.add_argument("--group", action="append", help="(repeatable)")
    which.add_argument("--all-groups", action="store_true")
    move = action("reset-offsets", "move a group's committed offsets (a plan unless --execute)")
    move.add_argument("--group", required=True)
    scope = move.add_mutually_exclusive_group(required=True)
    scope.add_argument("--topic", action="append", metavar="TOPIC[:P,P]", help="(repeatable)")
    scope.add_argument("--all-topics", action="store_true", help="every topic it has offsets in")
    to = move.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true")
    to.add_argument("--to-latest", action="store_true")
    to.add_argument("--to-datetime", metavar="ISO")
    to.add_argument("--shift-by", type=int, metavar="N")
    to.add_argument("--to-offset", type=int, metavar="N")
    mode = move.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan only (the default)")
    mode.add_argument("--execute", action="store_true", help="commit the new offsets")
    delete = action("delete", "delete groups that have no members")
    delete.add_argument("--group", action="append", required=True, help="(repeatable)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    actions = {
        "list": _list,
        "describe": _describe,
        "reset-offsets": _reset,
        "delete": _delete,
    }
    return common.reporting("groups", actions[args.groups_command], args, out)


# ---------------------------------------------------------------------------------- list
def list_groups(args: argparse.Namespace, client: Any) -> list[dict[str, str]]:
    future = client.list_consumer_groups(request_timeout=args.timeout)
    try:
        result = future.result(timeout=args.timeout)
    except Exception as exc:
        raise common.ClusterError(f"cannot list groups: {common.error_text(exc)}") from None
    return sorted(
        (
            {"group": g.group_id, "state": _state(g.state), "type": _type(g.type)}
            for g in result.valid
        ),
        key=lambda g: g["group"],
    )


def _list(args: argparse.Namespace, out: TextIO) -> int:
    groups = list_groups(args, common.admin(args))
    if args.json:
        common.print_json({"groups": groups}, out)
    else:
        rows = [(g["group"], g["state"], g["type"]) for g in groups]
        common.print_table(out, ("GROUP", "STATE", "TYPE"), rows)
    return 0


def _state(state: Any) -> str:
    return STATES.get(getattr(state, "name", ""), str(state))


def _type(kind: Any) -> str:
    return str(getattr(kind, "name", kind)).lower()


# ------------------------------------------------------------------------------ describe
def describe_group(args: argparse.Namespace, client: Any, group: str) -> dict[str, Any]:
    """One group as a JSON-ready dict: state, type, members, and per partition the committed
    offset, log end offset and lag (log end minus committed), as kafka-consumer-groups
    --describe reports them."""
    kafka = common.kafka()
    futures = client.describe_consumer_groups([group], request_timeout=args.timeout)
    try:
        description = futures[group].result(timeout=args.timeout)
    except Exception as exc:
        raise common.ClusterError(f"cannot describe {group}: {common.error_text(exc)}") from None
    committed = committed_offsets(args, client, group)
    owners: dict[reset.Partition, Any] = {}
    members = []
    for member in description.members:
        assigned = sorted((tp.topic, tp.partition) for tp in member.assignment.topic_partitions)
        owners.update({tp: member for tp in assigned})
        members.append(
            {
                "member_id": member.member_id,
                "group_instance_id": member.group_instance_id,
                "client_id": member.client_id,
                "host": member.host,
                "assignment": [{"topic": t, "partition": p} for t, p in assigned],
            }
        )
    state = _state(description.state)
    if state == "Dead" and not members and not committed:
        raise common.ClusterError(f"consumer group {group} does not exist")
    partitions = sorted(set(committed) | set(owners))
    # A partition whose log end is not known (its topic deleted since) shows "-", as in Kafka.
    log_ends = list_offsets(args, client, partitions, kafka.admin.OffsetSpec.latest(), strict=False)
    offsets = []
    for tp in partitions:
        current, log_end = committed.get(tp), log_ends.get(tp)
        owner = owners.get(tp)
        offsets.append(
            {
                "topic": tp[0],
                "partition": tp[1],
                "committed_offset": current,
                "log_end_offset": log_end,
                "lag": None if current is None or log_end is None else max(0, log_end - current),
                "member_id": owner.member_id if owner else None,
                "host": owner.host if owner else None,
                "client_id": owner.client_id if owner else None,
            }
        )
    coordinator = description.coordinator
    return {
        "group": group,
        "state": state,
        "type": _type(description.type),
        "assignor": description.partition_assignor or None,
        "coordinator": coordinator.id if coordinator is not None else None,
        "members": members,
        "offsets": offsets,
    }


def committed_offsets(
    args: argparse.Namespace, client: Any, group: str
) -> dict[reset.Partition, int]:
    kafka = common.kafka()
    request = kafka.ConsumerGroupTopicPartitions(group)
    futures = client.list_consumer_group_offsets([request], request_timeout=args.timeout)
    try:
        result = futures[group].result(timeout=args.timeout)
    except Exception as exc:
        raise common.ClusterError(
            f"cannot fetch the offsets of {group}: {common.error_text(exc)}"
        ) from None
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in result.topic_partitions
        if tp.offset >= 0 and tp.error is None
    }


def list_offsets(
    args: argparse.Namespace,
    client: Any,
    partitions: list[reset.Partition],
    spec: Any,
    strict: bool = True,
) -> dict[reset.Partition, int]:
    """ListOffsets for each partition (read_uncommitted, as Kafka's tool asks); a partition
    the cluster cannot answer for is an error, or left out unless `strict`."""
    if not partitions:
        return {}
    kafka = common.kafka()
    request = {kafka.TopicPartition(t, p): spec for t, p in partitions}
    futures = client.list_offsets(request, request_timeout=args.timeout)
    found: dict[reset.Partition, int] = {}
    for tp, future in futures.items():
        try:
            found[(tp.topic, tp.partition)] = future.result(timeout=args.timeout).offset
        except Exception as exc:
            if strict:
                raise common.ClusterError(
                    f"cannot list offsets of {tp.topic}-{tp.partition}: {common.error_text(exc)}"
                ) from None
    return found


def _describe(args: argparse.Namespace, out: TextIO) -> int:
    client = common.admin(args)
    names = args.group or [g["group"] for g in list_groups(args, client)]
    groups = [describe_group(args, client, name) for name in names]
    if args.json:
        common.print_json({"groups": groups}, out)
        return 0
    for group in groups:
        title = (
            f"Group: {group['group']}  State: {group['state']}  Type: {group['type']}  "
            f"Assignor: {group['assignor'] or '-'}  Members: {len(group['members'])}"
        )
        member_rows = [
            (
                m["member_id"],
                m["client_id"],
                m["host"],
                ",".join(f"{a['topic']}-{a['partition']}" for a in m["assignment"]) or "-",
            )
            for m in group["members"]
        ]
        if member_rows:
            common.print_table(
                out, ("CONSUMER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"), member_rows, title
            )
            title = ""
        offset_rows = [
            (
                o["topic"],
                o["partition"],
                o["committed_offset"],
                o["log_end_offset"],
                o["lag"],
                o["member_id"],
                o["host"],
                o["client_id"],
            )
            for o in group["offsets"]
        ]
        columns = (
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        )
        if offset_rows:
            common.print_table(out, columns, offset_rows, title)
        else:
            out.write(f"{title}\nNo committed offsets.\n" if title else "No committed offsets.\n")
    return 0


# ------------------------------------------------------------------------- reset-offsets
def _target(args: argparse.Namespace) -> reset.Target:
    if args.to_earliest:
        return reset.Target("earliest")
    if args.to_latest:
        return reset.Target("latest")
    if args.to_datetime is not None:
        return reset.Target("datetime", parse_datetime_ms(args.to_datetime))
    if args.shift_by is not None:
        return reset.Target("shift", args.shift_by)
    if args.to_offset < 0:
        raise UsageError(f"--to-offset must be 0 or more, not {args.to_offset}")
    return reset.Target("offset", args.to_offset)


def parse_datetime_ms(text: str) -> int:
    """An ISO 8601 time in ms since the epoch; local time when it names no zone (as Kafka)."""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--to-datetime takes an ISO time such as 2026-12-06T07:00:00, not {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # the local zone
    return int(when.timestamp() * 1000)


def _partitions(
    args: argparse.Namespace, client: Any, committed: dict[reset.Partition, int]
) -> list[reset.Partition]:
    if args.all_topics:
        return sorted(committed)
    metadata = common.reach(client, args)
    chosen: list[reset.Partition] = []
    for text in args.topic:
        name, numbers = reset.parse_topic(text)
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            raise common.ClusterError(f"no such topic: {name}")
        existing = sorted(topic.partitions)
        absent = [p for p in numbers or [] if p not in existing]
        if absent:
            raise UsageError(f"{name} has no partition {', '.join(map(str, absent))}")
        chosen.extend((name, p) for p in (numbers if numbers is not None else existing))
    return sorted(set(chosen))


def _reset(args: argparse.Namespace, out: TextIO) -> int:
    target = _target(args)
    kafka = common.kafka()
    client = common.admin(args)
    state = _group_state(args, client, args.group)
    if state not in RESETTABLE:
        raise common.ClusterError(
            f"assignments can only be reset if the group {args.group!r} is inactive, "
            f"but the current state is {state}"
        )
    committed = committed_offsets(args, client, args.group)
    partitions = _partitions(args, client, committed)
    spec = kafka.admin.OffsetSpec
    starts = list_offsets(args, client, partitions, spec.earliest())
    ends = list_offsets(args, client, partitions, spec.latest())
    at_time = (
        list_offsets(args, client, partitions, spec.for_timestamp(target.value))
        if target.kind == "datetime"
        else {}
    )
    offsets = {tp: reset.Offsets(starts[tp], ends[tp], at_time.get(tp)) for tp in partitions}
    moves = reset.plan(target, partitions, committed, offsets)
    if args.execute and moves:
        request = kafka.ConsumerGroupTopicPartitions(
            args.group, [kafka.TopicPartition(m.topic, m.partition, m.new) for m in moves]
        )
        futures = client.alter_consumer_group_offsets([request], request_timeout=args.timeout)
        try:
            result = futures[args.group].result(timeout=args.timeout)
        except Exception as exc:
            raise common.ClusterError(
                f"cannot reset {args.group}: {common.error_text(exc)}"
            ) from None
        failed = [tp for tp in result.topic_partitions if tp.error is not None]
        if failed:
            tp = failed[0]
            raise common.ClusterError(
                f"cannot reset {args.group} at {tp.topic}-{tp.partition}: {tp.error.str()}"
            )
    if args.json:
        common.print_json(
            {
                "group": args.group,
                "executed": bool(args.execute),
                "offsets": [
                    {
                        "topic": m.topic,
                        "partition": m.partition,
                        "current_offset": m.current,
                        "new_offset": m.new,
                    }
                    for m in moves
                ],
            },
            out,
        )
        return 0
    if not moves:
        out.write(f"Nothing to reset: {args.group} has no committed offsets.\n")
        return 0
    rows = [(args.group, m.topic, m.partition, m.current, m.new) for m in moves]
    common.print_table(out, ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"), rows)
    if not args.execute:
        out.write("Dry run: nothing changed. Run again with --execute to commit these offsets.\n")
    return 0


def _group_state(args: argparse.Namespace, client: Any, group: str) -> str:
    futures = client.describe_consumer_groups([group], request_timeout=args.timeout)
    try:
        return _state(futures[group].result(timeout=args.timeout).state)
    except Exception as exc:
        raise common.ClusterError(f"cannot describe {group}: {common.error_text(exc)}") from None


# -------------------------------------------------------------------------------- delete
def _delete(args: argparse.Namespace, out: TextIO) -> int:
    client = common.admin(args)
    groups = list(dict.fromkeys(args.group))
    futures = client.delete_consumer_groups(groups, request_timeout=args.timeout)
    errors = common.wait_all(futures, args.timeout)
    deleted = [g for g in groups if g not in errors]
    if args.json:
        common.print_json(
            {
                "deleted": deleted,
                "errors": {g: common.error_text(e) for g, e in errors.items()},
            },
            out,
        )
    else:
        out.writelines(f"Deleted consumer group {g}.\n" for g in deleted)
    if errors:
        raise common.ClusterError(
            "; ".join(f"cannot delete {g}: {common.error_text(e)}" for g, e in errors.items())
        )
    return 0
