"""Run a command under a pseudo-terminal, as a person at a terminal would, and get what it
showed there: to see progress displays that a command shows only on a terminal.

    code, shown = in_terminal([SAMSA, "sim", "--seeds", "3"])
"""

from __future__ import annotations

import os
import pty
import select
import time
from collections.abc import Sequence

TIMEOUT_S = 120.0
READ_BYTES = 65536


def in_terminal(argv: Sequence[str], timeout_s: float = TIMEOUT_S) -> tuple[int, str]:
    """(exit code, everything written to the terminal, escape sequences included)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin, stdout and stderr are the terminal
        try:
            os.execv(argv[0], list(argv))
        finally:
            os._exit(127)
    shown = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(fd, READ_BYTES)
            except OSError:  # EIO: the child closed the terminal (it exited)
                break
            if not data:
                break
            shown += data
        else:
            os.kill(pid, 9)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")
