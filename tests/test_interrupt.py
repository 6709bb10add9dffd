"""Ctrl-C on every command that starts processes or long work: it stops everything it started,
prints one line and exits 130 (as a shell reports a process killed by SIGINT).

Each command runs for real, in a session of its own; the test waits until it is working, sends
SIGINT to its process group (what a terminal does on Ctrl-C), and then looks through /proc for
any process that carries the command's marker (`samsa.testing.interrupt`).
"""

from __future__ import annotations

from samsa.testing.interrupt import Command

WORKER = r"samsa\.payments\.worker"


def assert_interrupted(command: Command, name: str) -> str:
    """Exit 130, one line on stderr, no traceback, nothing left running; the stdout."""
    try:
        code, stdout, stderr = command.finish()
        left = command.leftovers()
    finally:
        command.cleanup()
    assert left == [], f"left running: {left}"
    assert "Traceback" not in stderr, stderr
    assert stderr.splitlines() == [f"samsa {name}: interrupted"], stderr
    assert code == 130, stderr
    return stdout


def test_ctrl_c_on_demo_payments_stops_its_workers() -> None:
    command = Command(["demo", "payments", "--orders", "400"]).start()
    command.wait_for(lambda: command.working(WORKER, 2))
    command.interrupt()
    assert_interrupted(command, "demo")


def test_kill_9_of_demo_payments_takes_its_workers_along() -> None:
    """No handler runs on SIGKILL: the workers notice their parent is gone and exit."""
    command = Command(["demo", "payments", "--orders", "400"]).start()
    try:
        command.wait_for(lambda: command.working(WORKER, 2))
        command.kill9()
        command.wait()  # not its output: an orphan would hold the pipes open
        left = command.leftovers()
    finally:
        command.cleanup()
    assert left == [], f"left running: {left}"
