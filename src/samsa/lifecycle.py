"""Child processes that stop when told and never outlive their parent.

A command that starts helper processes (the payment workers of `samsa demo payments`) starts
them with `child_options()`: each in a process group of its own, so a Ctrl-C at the terminal
reaches only the command, which then stops its children itself (SIGTERM, then SIGKILL), in
order; and with the parent's pid in the environment.

The child calls `supervise(stop)` first thing in its main:

- SIGTERM sets `stop`, and if the child has not exited `STOP_GRACE_S` later (a Kafka client
  flushing towards a broker that is gone can take that long) it exits anyway. The signal is
  taken by a thread of its own with `sigwait`, so it is honoured even while the main thread is
  inside a long C call, where a Python signal handler would only run once the call returns.
- a watcher thread (`watch_parent`) exits the child as soon as its parent is gone, also after
  `kill -9` of the parent, where no handler of the parent runs. Linux's PR_SET_PDEATHSIG would
  signal the child when the *thread* that started it ends, and the demo starts its workers from
  short-lived threads, so the child watches its parent's pid instead.

`samsa serve` started so (by `samsa verify`, or a test's `BrokerProcess`) only watches its
parent, and then shuts down cleanly as on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

PARENT_PID = "SAMSA_PARENT_PID"
STOP_GRACE_S = 5.0
PARENT_POLL_S = 0.2
EXIT_TERMINATED = 128 + signal.SIGTERM  # as a shell reports a process killed by SIGTERM
EXIT_ORPHANED = 1


def stopper(stop: asyncio.Event, sig: int, received: list[int]) -> Callable[[], None]:
    """A loop signal handler for a long-running command (serve, chaos): note the signal and
    stop; the command then exits 130 if SIGINT was among them, as a JVM does on Ctrl-C."""

    def handle() -> None:
        received.append(sig)
        stop.set()

    return handle


def child_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `subprocess.Popen` of a supervised child; its environment is
    `env` (default: this process's), with the parent's pid added."""
    base = os.environ if env is None else env
    return {"process_group": 0, "env": {**base, PARENT_PID: str(os.getpid())}}


def supervise(stop: threading.Event, grace_s: float = STOP_GRACE_S) -> None:
    """In the child, before it starts any other thread (new threads inherit the blocked
    SIGTERM, so the signal goes to the waiting thread, not to them)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_on_sigterm, args=(stop, grace_s), name="sigterm", daemon=True).start()
    watch_parent(lambda: os._exit(EXIT_ORPHANED))


def watch_parent(on_gone: Callable[[], object]) -> None:
    """Call `on_gone` (on a thread of its own) once the parent that started this process with
    `child_options()` is gone; nothing if it was not started so."""
    expected = os.environ.pop(PARENT_PID, "")  # not for this process's own children
    if not expected.isdigit():
        return
    threading.Thread(
        target=_watch_parent, args=(int(expected), on_gone), name="parent", daemon=True
    ).start()


def _on_sigterm(stop: threading.Event, grace_s: float) -> None:
    signal.sigwait({signal.SIGTERM})
    stop.set()
    time.sleep(grace_s)
    os._exit(EXIT_TERMINATED)  # the clean stop took too long: a crash is safe by design


def _watch_parent(parent: int, on_gone: Callable[[], object]) -> None:
    # Once the parent is gone the child is adopted (getppid changes); that also covers a parent
    # that died before this thread started.
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    on_gone()
