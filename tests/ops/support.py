"""Run a `samsa` tool in this process through `samsa.cli.main`, as the command line does
(argument parsing, one-line errors and exit codes included), with stdin given and stdout and
stderr captured."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pytest

from samsa import cli


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        assert self.code == 0, self.err
        return [json.loads(line) for line in self.out.splitlines()]


class Tool:
    def __init__(
        self,
        bootstrap: str,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.bootstrap = bootstrap
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    def __call__(self, *argv: str, stdin: str = "") -> Result:
        """`samsa COMMAND ACTION... --bootstrap-server B` (the option goes last, as an action's
        own options may)."""
        self._monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        self._capsys.readouterr()
        code = cli.main([*argv, "--bootstrap-server", self.bootstrap])
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *argv: str, stdin: str = "") -> Result:
        result = self(*argv, stdin=stdin)
        assert result.code == 0, result.err
        return result
