"""`samsa serve` as a real subprocess: for tests that kill the broker (kill -9) and restart it
on the same port and data dir, as a crash does.

    broker = BrokerProcess(data_dir, {"num.partitions": "3"}).start()
    ...
    broker.kill9()
    broker.start()          # recovery runs, the port stays the same
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from samsa import lifecycle
from samsa.testing.memory import proc_status

SAMSA = str(Path(sys.executable).parent / "samsa")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
OUTPUT_LINES_MAX = 10_000


def free_port() -> int:
    """A port free now (another process may take it before it is used)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BrokerProcess:
    """A restartable `samsa serve`. `settings` by Kafka name: a mapping, or NAME=VALUE strings
    as `--set` takes them."""

    def __init__(
        self,
        data_dir: str,
        settings: Mapping[str, str] | Sequence[str] = (),
        log_level: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env`: the broker's environment (None: this process's)."""
        self.data_dir = data_dir
        self.env = None if env is None else dict(env)
        self.log_level = log_level  # `samsa --log-level`; None: serve's default (INFO)
        self.port = free_port()
        if isinstance(settings, Mapping):
            self.settings = [f"{name}={value}" for name, value in settings.items()]
        else:
            self.settings = list(settings)
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []  # what the broker printed, across starts
        self.starts = 0
        self._reader: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> BrokerProcess:
        """Start and wait until it accepts connections (it prints "ready")."""
        if self.running:
            raise RuntimeError("the broker is already running")
        command = [SAMSA] + (["--log-level", self.log_level] if self.log_level else [])
        command += ["serve", "--data-dir", self.data_dir, "--port", str(self.port)]
        for setting in self.settings:
            command += ["--set", setting]
        # Its own process group (Ctrl-C reaches the caller, which stops it in order), and it
        # shuts down when the caller is gone.
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **lifecycle.child_options(self.env),
        )
        self.process = process
        ready = threading.Event()

        def read() -> None:
            if process.stdout is None:
                return
            for line in process.stdout:
                if len(self.output) < OUTPUT_LINES_MAX:
                    self.output.append(line.rstrip("\n"))
                if line.strip() == "ready":
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(START_TIMEOUT_S) or process.poll() is not None:
            self.kill9()
            raise RuntimeError("samsa serve did not start:\n" + "\n".join(self.output[-50:]))
        self.starts += 1
        return self

    def kill9(self) -> None:
        """SIGKILL: no flush, no clean-shutdown marker (also of a paused broker)."""
        if self.running and self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_S)
        self._join_reader()

    def pause(self) -> None:
        if self.running and self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.running and self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def terminate(self) -> int:
        """SIGTERM (a clean shutdown), wait; the exit code."""
        if self.process is None:
            raise RuntimeError("the broker was never started")
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(STOP_TIMEOUT_S)
        self._join_reader()
        return code

    def stop(self) -> None:
        """Shut down cleanly if running (a paused broker is resumed first); kill -9 if it does
        not stop in time."""
        if not self.running:
            return
        self.resume()
        try:
            self.terminate()
        except subprocess.TimeoutExpired:
            self.kill9()

    def rss_bytes(self) -> int:
        """Resident memory of the running broker (Linux /proc; psutil is not a dependency)."""
        return proc_status(self._pid())["VmRSS"] * 1024

    def open_fds(self) -> int:
        """File descriptors the running broker holds (Linux /proc)."""
        return len(os.listdir(f"/proc/{self._pid()}/fd"))

    def _pid(self) -> int:
        if self.process is None or not self.running:
            raise RuntimeError("the broker is not running")
        return self.process.pid

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
