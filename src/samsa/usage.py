"""What every `samsa` command does with a misuse and with Ctrl-C.

A command raises `UsageError` for anything the user can mend (a bad argument, a missing file, a
port in use); `samsa.cli.main` prints it as one line on stderr, `samsa <command>: <message>`, and
exits with `USAGE_EXIT`. Ctrl-C anywhere ends the command with one line and `INTERRUPTED_EXIT`,
as a shell reports a process killed by SIGINT (128 + 2). `--debug` shows the traceback instead.
"""

from __future__ import annotations

USAGE_EXIT = 2
INTERRUPTED_EXIT = 130


class UsageError(Exception):
    """A misuse the user can mend; its message is the whole of what is printed."""
