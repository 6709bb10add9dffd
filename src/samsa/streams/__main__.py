"""`python -m samsa.streams run module:app ...`: the same as `samsa streams run ...`, without
importing the broker (a faster start for workers that are restarted often)."""

from __future__ import annotations

import argparse
import sys

from samsa.streams import cli
from samsa.usage import INTERRUPTED_EXIT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samsa.streams")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["streams", *(sys.argv[1:] if argv is None else argv)])
    try:
        return cli.run(args)
    except KeyboardInterrupt:
        print("samsa streams: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
