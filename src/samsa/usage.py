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

import argparse
import math
import signal
import sys
import threading
from types import FrameType
from typing import Any, NoReturn

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


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with its errors in the same one line, `samsa <command>: <message>`,
    and exit code as every other misuse (argparse prints the whole usage text first). Its
    subparsers are of this class too (`add_subparsers` makes them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(USAGE_EXIT)


def _number(text: str, kind: type[int] | type[float], low: float, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= low):
        raise argparse.ArgumentTypeError(f"{text} is not {what}")
    return value


def positive_int(text: str) -> int:
    """An argparse `type`: an integer of at least 1."""
    result: int = _number(text, int, 1, "a positive integer (1 or more)")
    return result


def non_negative_int(text: str) -> int:
    """An argparse `type`: an integer of at least 0."""
    result: int = _number(text, int, 0, "0 or more")
    return result


def positive_float(text: str) -> float:
    """An argparse `type`: a finite number greater than 0."""
    result: float = _number(text, float, 0, "a number greater than 0")
    if result > 0:
        return result
    raise argparse.ArgumentTypeError(f"{text} is not a number greater than 0")


def port_number(text: str) -> int:
    """An argparse `type`: a TCP port, 0 (any free one) to 65535."""
    port = non_negative_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535)")
    return port
