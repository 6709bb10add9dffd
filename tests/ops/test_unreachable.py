"""Without a cluster: every tool ends with one line and a non-zero exit within its --timeout,
never a hang or librdkafka's log; without confluent-kafka, one line saying what to install."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from samsa import cli
from samsa.testing.process import SAMSA, free_port

TIMEOUT_S = 1.0
# librdkafka's own shutdown after the timeout, on a busy machine.
SLACK_S = 3.0
COMMANDS = [
    ["topics", "list"],
    ["groups", "describe", "--group", "g"],
    ["produce", "--topic", "t"],
    ["consume", "--topic", "t"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_a_tool_gives_up_on_an_unreachable_bootstrap_in_time(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = cli.main([*argv, "--bootstrap-server", bootstrap, "--timeout", str(TIMEOUT_S)])
    elapsed_s = time.monotonic() - started
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith(f"samsa {argv[0]}: cannot reach {bootstrap}: "), err
    assert err.count("\n") == 1, err
    assert TIMEOUT_S <= elapsed_s < TIMEOUT_S + SLACK_S


def test_the_command_line_says_one_line_and_exits_1() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [SAMSA, "groups", "list", "--bootstrap-server", bootstrap, "--timeout", str(TIMEOUT_S)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(f"samsa groups: cannot reach {bootstrap}: ")
    assert done.stderr.count("\n") == 1, done.stderr


def test_without_confluent_kafka_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # `import` now fails
    assert cli.main(["topics", "list", "--bootstrap-server", "127.0.0.1:1"]) == 2
    assert capsys.readouterr().err == (
        "samsa topics: needs confluent-kafka: pip install 'samsa[clients]' (or confluent-kafka)\n"
    )
