"""A stand-in for Kafka's `bin/kafka-acls.sh`, for librdkafka's tests that shell out to it
(0109, 0115, 0119: `kafka-acls.sh --bootstrap-server B --add --deny-principal 'User:*'
--operation All --deny-host '*' --topic T`, and `--remove --force ...`).

It rewrites kafka-acls.sh's arguments into `samsa acl`'s, which reads like kafka-acls.sh but names
its action as a subcommand: `--bootstrap-server` is `--bootstrap`, `--add`/`--remove`/`--list`
are `add`/`remove`/`list`, `--allow-host` and `--deny-host` are `--host`, and `--force` (no
prompt) is what `samsa acl` always does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from samsa.cli import main as samsa_main

ACTIONS = {"--add": "add", "--remove": "remove", "--list": "list"}
RENAMED = {"--bootstrap-server": "--bootstrap", "--allow-host": "--host", "--deny-host": "--host"}


def samsa_arguments(argv: Sequence[str]) -> list[str]:
    """`samsa acl`'s arguments for kafka-acls.sh's `argv`."""
    actions = [ACTIONS[a] for a in argv if a in ACTIONS]
    if len(actions) != 1:
        raise SystemExit("kafka-acls.sh: give exactly one of --add, --remove, --list")
    where: list[str] = []
    options: list[str] = []
    items = iter(argv)
    for item in items:
        if item in ACTIONS or item == "--force":
            continue
        name = RENAMED.get(item, item)
        target = where if name == "--bootstrap" else options
        target.append(name)
        if name != "--cluster":
            target.append(next(items, ""))
    return ["acl", *where, actions[0], *options]


def main(argv: Sequence[str] | None = None) -> int:
    return samsa_main(samsa_arguments(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
