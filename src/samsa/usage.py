"""What every `samsa` command does with a misuse and with Ctrl-C.

A command raises `UsageError` for anything the user can mend (a bad argument, a missing file, a
port in use); `samsa.cli.main` prints it as one line on stderr, `samsa <command>: <message>`, and
exits with `USAGE_EXIT`. Ctrl-C anywhere ends the command with one line and `INTERRUPTED_EXIT`,
as a shell reports a process killed by SIGINT (128 + 2). `--debug` shows the traceback instead.

A KeyboardInterrupt raised inside a C extension does not always come out as itself:
confluent-kafka's `flush()` interrupted by Ctrl-C loses it and raises `SystemError ... returned
NULL`. So `catch_interrupts()` notes every Ctrl-C, and once one was pressed, whatever the command
dies of is reported as the interrupt.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

USAGE_EXIT = 2
INTERRUPTED_EXIT = 130


class UsageError(Exception):
    """A misuse the user can mend; its message is the whole of what is printed."""


_interrupted = threading.Event()


def catch_interrupts() -> None:
    """Note each Ctrl-C (SIGINT), then raise KeyboardInterrupt as Python's own handler does.
    A SIGINT the parent ignores (a background job, nohup) stays ignored."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def interrupted() -> bool:
    """Whether Ctrl-C was pressed since `catch_interrupts()`."""
    return _interrupted.is_set()


def _on_sigint(_signum: int, _frame: FrameType | None) -> None:
    _interrupted.set()
    raise KeyboardInterrupt
