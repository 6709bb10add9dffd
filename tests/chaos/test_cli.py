"""`samsa chaos` as a process: a real producer through it, a JSON report at exit."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from samsa.testing import EmbeddedBroker

from .support import produce_one, producer, read_log

SAMSA = str(Path(sys.executable).parent / "samsa")
READY_TIMEOUT_S = 15.0


def _free_port() -> int:
    # The command line needs its port before the broker that advertises it starts; the tiny
    # window in which another process could take the port is acceptable in a test.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stderr], [], [], 0.1)
        if readable:
            line = process.stderr.readline()
            seen += line
            if line.strip() == "ready":
                return seen
        if process.poll() is not None:
            break
    raise AssertionError(f"samsa chaos did not become ready: {seen!r}")


def test_command_line_proxy_injects_and_reports_as_json(tmp_path: Path) -> None:
    port = _free_port()
    settings = {"advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}"}
    with EmbeddedBroker(str(tmp_path / "data"), settings) as broker:
        upstream = broker.bootstrap
        command = [
            SAMSA,
            "chaos",
            f"--listen=127.0.0.1:{port}",
            f"--upstream={upstream}",
            "--seed=5",
            "--delay-ms=60-80",
            "--api=produce",
            "--report-interval-s=0.2",
            "--json",
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            banner = _wait_ready(process)
            assert f"listening on 127.0.0.1:{port}" in banner
            assert "seed 5" in banner
            p = producer(f"127.0.0.1:{port}")
            started = time.monotonic()
            produce_one(p, "cli", b"one")
            produce_one(p, "cli", b"two")
            assert time.monotonic() - started >= 0.12
            assert read_log(f"127.0.0.1:{port}", "cli") == [b"one", b"two"]
            time.sleep(0.3)  # at least one periodic report
        finally:
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 130, stderr  # Ctrl-C: a clean stop, reported as a JVM does
    assert stderr.splitlines()[-1] == "samsa chaos: interrupted"
    [line] = stdout.splitlines()  # exactly one JSON object on stdout
    report = json.loads(line)
    assert report["listen"] == f"127.0.0.1:{port}"
    assert report["upstream"] == upstream
    assert report["seed"] == 5
    stats = report["stats"]
    assert stats["delays"] == 2  # the two Produce responses, and nothing else
    assert 120 <= stats["delay_ms_total"] <= 160
    assert stats["requests_forwarded"]["produce"] == 2
    assert stats["responses_forwarded"]["fetch"] >= 1
    assert stats["faults_injected"] == 2
    assert stats["dropped_responses"] == stats["cuts"] == stats["blackholes"] == 0
    assert "faults injected:" in stderr  # the periodic report


def test_command_line_rejects_a_bad_rate() -> None:
    result = subprocess.run(
        [SAMSA, "chaos", "--drop-response-rate=1.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "probability" in result.stderr
