"""`samsa console` as a process, and the demos' --console: a console that follows the broker
each demo starts."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from samsa.chaos import proxied_broker
from samsa.console.server import following_demos
from samsa.demo.cli import CONSOLE_PORT
from samsa.testing.embedded import EmbeddedBroker

from .pages import get, text

SAMSA = str(Path(sys.executable).parent / "samsa")


def test_samsa_console_serves_until_interrupted(broker: EmbeddedBroker) -> None:
    process = subprocess.Popen(
        [SAMSA, "console", "--bootstrap", broker.bootstrap, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(f"samsa console for {broker.bootstrap} at http://127.0.0.1:")
        assert line.endswith(" (read-only)\n")
        url = line.split(" at ")[1].split(" ")[0]
        assert get(url, "/").status == 200
        process.send_signal(signal.SIGINT)  # Ctrl-C: stops, as every samsa command does
        assert process.wait(15) == 130
        assert process.stderr is not None
        assert process.stderr.read() == "samsa console: interrupted\n"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_demo_console_follows_each_broker_the_demo_starts() -> None:
    with following_demos(0) as console:
        waiting = get(console.url, "/")
        assert waiting.status == 503 and "waits for its broker" in text(waiting.body)
        for _ in range(2):  # payments starts one broker per scenario
            with proxied_broker() as (broker, proxy):
                assert console.cluster.bootstrap == broker.bootstrap  # past the proxy
                overview = get(console.url, "/")
                assert overview.status == 200
                assert f"127.0.0.1:{broker.port}" in text(overview.body)
                assert f"127.0.0.1:{proxy.bootstrap.split(':')[1]}" in text(overview.body)


def test_demo_console_flag_parses() -> None:
    import argparse

    from samsa.demo import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    assert parser.parse_args(["demo", "guarantees", "--console"]).console == CONSOLE_PORT
    assert parser.parse_args(["demo", "payments", "--console", "9000"]).console == 9000
    assert parser.parse_args(["demo", "payments"]).console is None
