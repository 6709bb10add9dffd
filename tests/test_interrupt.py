"""Ctrl-C on every command that starts processes or long work: it stops everything it started,
prints one line and exits 130 (as a shell reports a process killed by SIGINT).

Each command runs for real, in a session of its own; the test waits until it is working, sends
SIGINT to its process group (what a terminal does on Ctrl-C), and then looks through /proc for
any process that carries the command's marker (`samsa.testing.interrupt`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from samsa import lifecycle
from samsa.testing import EmbeddedBroker
from samsa.testing.interrupt import Command, threads
from samsa.testing.process import free_port

WORKER = r"samsa\.payments\.worker"


def assert_interrupted(command: Command, name: str) -> tuple[str, str]:
    """Exit 130, one line on stderr, no traceback, nothing left running; (stdout, stderr)."""
    code, stdout, stderr = command.finish()
    assert command.leftovers() == []
    assert "Traceback" not in stderr, stderr
    assert stderr.splitlines()[-1:] == [f"samsa {name}: interrupted"], stderr
    assert code == 130, stderr
    return stdout, stderr


def assert_one_line(stderr: str) -> None:
    assert len(stderr.splitlines()) == 1, stderr


def test_ctrl_c_on_demo_payments_stops_its_workers() -> None:
    with Command(["demo", "payments", "--orders", "400"]) as command:
        command.wait_for(lambda: command.working(WORKER, 2))
        command.interrupt()
        assert_one_line(assert_interrupted(command, "demo")[1])


def test_kill_9_of_demo_payments_takes_its_workers_along() -> None:
    """No handler runs on SIGKILL: the workers notice their parent is gone and exit."""
    with Command(["demo", "payments", "--orders", "400"]) as command:
        command.wait_for(lambda: command.working(WORKER, 2))
        command.kill9()
        command.wait()
        assert command.leftovers() == []


def test_ctrl_c_on_demo_guarantees_inside_a_flush_is_one_line() -> None:
    """confluent-kafka's flush() interrupted by Ctrl-C raised `SystemError ... flush returned
    NULL` (exit 1). The demo produces in rounds, each ended by a flush, so most of its time is
    spent inside one: 3 s into its work a Ctrl-C lands there."""
    with Command(["demo", "guarantees"]) as command:
        command.wait_for(lambda: command.working("demo guarantees", 1, threads_min=8))
        time.sleep(3.0)  # what it is doing cannot be seen from outside: give it time to be in it
        command.interrupt()
        assert_one_line(assert_interrupted(command, "demo")[1])


def test_ctrl_c_on_verify_stops_its_broker() -> None:
    with Command(["verify", "--duration", "120"]) as command:
        command.wait_for(lambda: command.working(r"samsa serve", 1, threads_min=2))
        command.wait_for(lambda: command.working("samsa verify", 1, threads_min=20))  # clients
        command.interrupt()
        assert_one_line(assert_interrupted(command, "verify")[1])


def test_kill_9_of_verify_takes_its_broker_along() -> None:
    with Command(["verify", "--duration", "120"]) as command:
        command.wait_for(lambda: command.working(r"samsa serve", 1, threads_min=2))
        command.kill9()
        command.wait()
        assert command.leftovers() == []


def test_ctrl_c_on_sim() -> None:
    with Command(["sim", "--seeds", "100000"]) as command:
        command.wait_for(lambda: cpu_seconds(command.pid) > 1.5)  # imported, and simulating
        command.interrupt()
        assert_one_line(assert_interrupted(command, "sim")[1])


def test_ctrl_c_on_serve_stops_it_cleanly_and_exits_130(tmp_path: Path) -> None:
    """As a JVM does on Ctrl-C: the shutdown runs, then exit 130 (SIGTERM still exits 0). Its
    INFO log lines come before the one line."""
    serve = ["serve", "--data-dir", str(tmp_path), "--port", str(free_port())]
    with Command(serve) as command:
        command.wait_for(lambda: "ready" in command.stdout().splitlines())
        command.interrupt()
        stdout, _ = assert_interrupted(command, "serve")
    assert "samsa broker stopped cleanly" in stdout


def test_ctrl_c_on_streams_run_stops_the_instance_cleanly(samsa_broker: EmbeddedBroker) -> None:
    app = "samsa.streams.examples.balances:app"
    quiet = ["--consumer", "log_level=0", "--producer", "log_level=0"]
    with Command(
        ["streams", "run", app, "--bootstrap-servers", samsa_broker.bootstrap, *quiet]
    ) as command:
        command.wait_for(lambda: "created topic balances" in command.stderr())
        command.interrupt()
        _, stderr = assert_interrupted(command, "streams")
    assert "stopped: processed" in stderr  # its clean stop ran first


def test_a_payment_worker_honours_sigterm_with_its_broker_gone(tmp_path: Path) -> None:
    """A worker whose broker is gone waits in a client call (30 s to read its committed
    offset); SIGTERM still ends it within the grace period."""
    dead = f"127.0.0.1:{free_port()}"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "samsa.payments.worker",
            f"--bootstrap={dead}",
            f"--gateway=http://{dead}",
            f"--db={tmp_path / 'payments.db'}",
            "--mode=exactly-once",
            "--partition=0",
            "--owner=payments-0",
        ],
        stdout=subprocess.PIPE,
        **lifecycle.child_options(),
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"READY\n"
        deadline = time.monotonic() + 30
        while threads(worker.pid) < 5 and time.monotonic() < deadline:  # in its client call
            time.sleep(0.05)
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(lifecycle.STOP_GRACE_S + 5)
        assert time.monotonic() - started < lifecycle.STOP_GRACE_S + 2
        assert code in (0, lifecycle.EXIT_TERMINATED)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
