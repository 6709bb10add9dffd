"""The code and its tests stay `mypy --strict` and `ruff` clean: checked as part of the suite
(pyproject's `[tool.mypy] files` names both `src/samsa` and `tests`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_strict() -> None:
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = _run(str(BIN / "ruff"), "check", "src", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_coordinators_do_not_import_the_broker() -> None:
    """`samsa.broker` builds on the coordinators, so they must not import it back (their
    continuation types live in `samsa.durability`)."""
    script = (
        "import sys, samsa.coordinator.txn.coordinator, samsa.coordinator.group.coordinator, "
        "samsa.coordinator.group.commits; "
        "print(sorted(m for m in sys.modules if m.startswith(('samsa.broker', 'samsa.server'))))"
    )
    result = _run(sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
