"""`samsa log`: check a data dir's partition logs, repair a damaged partition, dump segments.

    samsa log verify --data-dir D [--topic T [--partition P]] [--json]
    samsa log repair --data-dir D --topic T --partition P [--dry-run]
    samsa log dump (--files F.log[,F.log] | --data-dir D --topic T --partition P)
                   [--deep-iteration] [--print-data-log] [--json]

Exit status: 0 clean (verify) or repaired / nothing to repair (repair) or dumped (dump, damaged
batches included: they show `isvalid: false`); 1 problems found (verify) or the repair failed
with nothing changed or a file could not be read; 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from samsa.tools import dump
from samsa.tools.logdir import verify
from samsa.tools.repair import REPAIR_INFIX, RepairFailed, describe, repair
from samsa.usage import ArgumentParser, UsageError

VERIFY_HELP = """\
Check every batch (header and CRC-32C) of every segment, every offset, time and
aborted-transaction index, the offsets from one segment to the next, the log start
checkpoint, producer snapshots, and that topics.json and the partition directories
agree. Prints one line per finding (file, byte position, what is wrong) and a summary.

It only reads, so it may run while a broker runs; a finding at the very end of an
active segment, or in a segment that retention deleted meanwhile, may then be a
race: run it again.
"""

REPAIR_HELP = f"""\
Repair one partition of a STOPPED broker (it takes the data dir's lock, and refuses
if a broker holds it). Every intact batch is kept: damaged bytes are skipped to the
next valid batch, and the offsets lost are printed, one range per line. The
partition's original files, producer snapshots included, are moved aside, untouched,
to <data dir>/<topic>-<partition>{REPAIR_INFIX}<UTC time>, which the broker ignores:
delete it once satisfied. The broker rebuilds producer state from the log on start.

Lost offsets at the end of the log are reused by new writes; a consumer whose
position was past the new log end is reset (auto.offset.reset). The repair needs
free space for one copy of the partition.
"""

DUMP_HELP = """\
Print every batch of segment files as Kafka's kafka-dump-log.sh does: base and last
offset, count, position, size, create time, producer id and epoch, base sequence,
isTransactional, isControl and, for a transaction marker, endTxnMarker COMMIT or
ABORT, compression, CRC and whether it is valid. A batch whose CRC does not match
shows isvalid: false (its records are not read); bytes holding no batch show as one
"damaged bytes" line, and the dump resumes at the next valid batch. As with
kafka-dump-log, damage does not change the exit status: `samsa log verify` checks.

Read only: safe beside a running broker (the active segment may end mid-write).
Keys, values and headers print as UTF-8 text, or as base64: followed by base64.
"""


def register(subparsers: Any) -> None:
    """Add the `log` subcommand to the `samsa` parser."""
    parser = subparsers.add_parser(
        "log",
        help="verify a data dir's logs, repair a damaged partition",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="log_command", required=True, parser_class=ArgumentParser)
    check = actions.add_parser(
        "verify",
        help="check every batch, index and segment (read only; safe beside a broker)",
        description=VERIFY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--data-dir", required=True)
    check.add_argument("--topic", help="only this topic")
    check.add_argument("--partition", type=int, help="only this partition (needs --topic)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    fix = actions.add_parser(
        "repair",
        help="keep every intact batch of a damaged partition (broker stopped)",
        description=REPAIR_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fix.add_argument("--data-dir", required=True)
    fix.add_argument("--topic", required=True)
    fix.add_argument("--partition", type=int, required=True)
    fix.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    show = actions.add_parser(
        "dump",
        help="print the batches (and records) of segment files, like kafka-dump-log",
        description=DUMP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument(
        "--files",
        action="append",
        default=[],
        metavar="F.log[,F.log]",
        help="segment files, comma-separated (repeatable)",
    )
    show.add_argument("--data-dir", help="with --topic and --partition: every segment of it")
    show.add_argument("--topic")
    show.add_argument("--partition", type=int)
    show.add_argument(
        "--deep-iteration", action="store_true", help="each record too (no keys or values)"
    )
    show.add_argument(
        "--print-data-log", action="store_true", help="each record with key, value and headers"
    )
    show.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    command = f"samsa log {args.log_command}"
    try:
        if args.log_command == "verify":
            return _verify(args)
        if args.log_command == "dump":
            return _dump(args)
        return _repair(args)
    except UsageError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    except (RepairFailed, OSError) as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1


def _verify(args: argparse.Namespace) -> int:
    if args.partition is not None and args.topic is None:
        raise UsageError("--partition needs --topic")
    report = verify(args.data_dir, args.topic, args.partition)
    if args.json:
        print(
            json.dumps(
                {
                    "data_dir": args.data_dir,
                    "clean": not report.findings,
                    "partitions": report.partitions,
                    "segments": report.segments,
                    "batches": report.batches,
                    "bytes_checked": report.bytes_checked,
                    "findings": [
                        {"path": f.path, "position": f.position, "problem": f.problem}
                        for f in report.findings
                    ],
                    "damaged_partitions": [ref.name for ref in report.damaged],
                }
            )
        )
    else:
        for finding in report.findings:
            print(finding)
        print(report.summary)
        for ref in report.damaged:
            print(
                f"{ref.name}: with the broker stopped, `samsa log repair --data-dir "
                f"{args.data_dir} --topic {ref.topic} --partition {ref.partition}`"
            )
    return 1 if report.findings else 0


def _dump(args: argparse.Namespace) -> int:
    files = [name for item in args.files for name in item.split(",") if name]
    paths = dump.segment_files(files, args.data_dir, args.topic, args.partition)
    options = dump.Options(deep=args.deep_iteration, data=args.print_data_log)
    for path in paths:
        if not args.json:
            print(f"Dumping {path}")
            print(f"Log starting offset: {int(os.path.basename(path)[: -len('.log')])}")
        for row in dump.dump(path, options):
            print(json.dumps(row) if args.json else dump.line(row))
    return 0


def _repair(args: argparse.Namespace) -> int:
    outcome = repair(
        args.data_dir, args.topic, args.partition, datetime.now(UTC), dry_run=args.dry_run
    )
    for line in describe(outcome, args.data_dir):
        print(line)
    return 0
