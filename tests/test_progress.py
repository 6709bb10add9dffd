"""Long commands show what they are doing on a terminal, and nothing of it with --json or when
stdout is not a terminal (a pipe, as here, or a file)."""

from __future__ import annotations

import json
import subprocess

from samsa.testing.process import SAMSA
from samsa.testing.terminal import in_terminal

ESC = "\x1b"


def test_sim_shows_its_progress_on_a_terminal() -> None:
    code, shown = in_terminal([SAMSA, "sim", "--seeds", "3", "--steps", "50"])
    assert code == 0, shown
    assert "simulating 50 steps per seed" in shown
    assert "3/3" in shown  # the count of seeds done
    assert ESC in shown  # drawn and erased in place
    assert "no invariant violated" in shown


def test_sim_with_json_on_a_terminal_prints_only_json() -> None:
    code, shown = in_terminal([SAMSA, "sim", "--seeds", "3", "--steps", "50", "--json"])
    assert code == 0, shown
    assert ESC not in shown
    assert json.loads(shown)["seeds"] == 3


def test_sim_into_a_pipe_shows_no_progress() -> None:
    done = subprocess.run(
        [SAMSA, "sim", "--seeds", "3", "--steps", "50"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert ESC not in done.stdout and "simulating" not in done.stdout
    assert (
        done.stdout.splitlines()[0]
        == "3 seeds from 0, 50 steps each, " + (done.stdout.splitlines()[0].rpartition(", ")[2])
    )
    assert done.stderr == ""


# `samsa verify`'s phases on a terminal: tests/verify/test_verify_cli.py (two runs, one cluster).
