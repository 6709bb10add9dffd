"""The `samsa` console script: `samsa.cli.main`, and Ctrl-C while it starts (importing every
command takes a second) also one line and exit 130, not a traceback of the imports."""

from __future__ import annotations

import sys

from samsa.usage import INTERRUPTED_EXIT

OPTIONS_WITH_VALUE = ("--log-level",)  # samsa's own options before the command


def main() -> int:
    try:
        from samsa.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        if "--debug" in sys.argv[1:]:
            raise
        print(f"samsa {command(sys.argv[1:])}: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


def command(argv: list[str]) -> str:
    """The command named in `argv`, as far as can be told without the parser."""
    words = iter(argv)
    for word in words:
        if word in OPTIONS_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return "(starting)"
