"""Ctrl-C a real `samsa` command and find what it left behind.

    with Command(["demo", "payments", "--orders", "200"]) as command:   # kill -9s what is left
        command.wait_for(lambda: command.processes(r"samsa\\.payments\\.worker"))
        command.interrupt()        # SIGINT to its process group, as a terminal sends Ctrl-C
        code, stdout, stderr = command.finish()
        assert command.leftovers() == []

Each command runs in a session of its own with a marker in its environment; every process it
starts inherits the environment, so `/proc/*/environ` finds them all, even after they are
orphaned and adopted by init, or moved to a process group of their own.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

SAMSA = str(Path(sys.executable).parent / "samsa")
MARKER = "SAMSA_TEST_MARKER"
WAIT_S = 60.0
LEFTOVER_GRACE_S = 10.0

T = TypeVar("T")


def marked(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment holds the marker."""
    wanted = f"{MARKER}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rpartition(b")")[2].split()[0]
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if wanted in environ and state != b"Z":  # a zombie is dead, only not yet reaped
            found.append((int(entry), cmdline))
    return found


def threads(pid: int) -> int:
    """How many threads the process runs now (0 if it is gone): a Kafka client starts several,
    so a count above a few says a process has got as far as creating its clients."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


class Command:
    """`samsa ARGS...` as a subprocess in a session of its own, stdout and stderr to files."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.args = [SAMSA, *args]
        self.marker = uuid.uuid4().hex
        self.env = {**os.environ, **(env or {}), MARKER: self.marker}
        self.process: subprocess.Popen[bytes] | None = None
        # Files, not pipes: readable while it runs, and an orphan holding them blocks nothing.
        self._stdout = tempfile.TemporaryFile()  # noqa: SIM115 (closed by cleanup())
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115

    def __enter__(self) -> Command:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.cleanup()

    def start(self) -> Command:
        self.process = subprocess.Popen(
            self.args,
            stdout=self._stdout,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.pid

    def processes(self, pattern: str = "") -> list[tuple[int, str]]:
        """Its live processes (itself included) whose command line matches `pattern`."""
        return [(pid, cmd) for pid, cmd in marked(self.marker) if re.search(pattern, cmd)]

    def wait_for(self, condition: Callable[[], T], timeout_s: float = WAIT_S) -> T:
        """Poll `condition` until it is truthy; fail if the command exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"{self.args} exited with {self.process.returncode} first:\n"
                    f"{self.stdout()[-2000:]}\n{self.stderr()[-3000:]}"
                )
            time.sleep(0.05)
        raise AssertionError(f"{self.args}: condition not met in {timeout_s} s")

    def working(self, pattern: str, count: int, threads_min: int = 5) -> bool:
        """At least `count` of its processes matching `pattern` run `threads_min` threads."""
        return sum(threads(pid) >= threads_min for pid, _ in self.processes(pattern)) >= count

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the whole foreground process group, as a terminal sends it."""
        os.killpg(self.pid, signal.SIGINT)

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout_s: float = WAIT_S) -> int:
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.wait(timeout_s)

    def finish(self, timeout_s: float = WAIT_S) -> tuple[int, str, str]:
        """Wait for it to exit: (exit code, stdout, stderr)."""
        try:
            code = self.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.cleanup()
            raise
        return code, self.stdout(), self.stderr()

    def stdout(self) -> str:
        """What it printed on stdout so far."""
        return _read(self._stdout)

    def stderr(self) -> str:
        return _read(self._stderr)

    def leftovers(self, grace_s: float = LEFTOVER_GRACE_S) -> list[tuple[int, str]]:
        """Its processes still alive after `grace_s` (a child may take a moment to see its
        parent gone); the empty list as soon as there are none."""
        deadline = time.monotonic() + grace_s
        while True:
            left = marked(self.marker)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def cleanup(self) -> None:
        """kill -9 whatever is left, so a failing test does not leave processes behind."""
        for pid, _ in marked(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None and self.process.poll() is None:
            self.process.wait(5)
        if self._stdout.closed:
            return
        self._stdout.close()
        self._stderr.close()
