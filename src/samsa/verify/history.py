"""The history of a verify run: every operation a client or the nemesis performed, with its
outcome, as JSON lines.

Outcomes, as Jepsen uses them: `ok` (it happened), `failed` (it definitely did not happen),
`unknown` (timed out or otherwise indeterminate: it may or may not have happened).

Kinds of operation and the fields each carries (all carry index, kind, process, outcome, start,
end; times are seconds since the run began, on one monotonic clock):

- `send`: value, partition, offset (if acknowledged), txn (if transactional), seq (the order of
  the send within its producer instance, which is its `process`).
- `poll`: reads [[partition, offset, value], ...], isolation (`committed`/`uncommitted`).
- `assign` / `seek` / `revoke`: offsets {partition: position, -1 if unknown}. Each starts a new
  stretch of a consumer's reads, so a jump is not a skip.
- `txn`: txn, action (`commit`, `abort`, or `crash` - its producer was abandoned mid-transaction;
  `ok` once a successor with the same transactional.id has fenced it, so it is aborted).
- `fault`: action (the fault kind), detail.
- `final-read`: reads, isolation: a fresh consumer's read of everything, after the run.
- `group-offsets`: offsets: the copiers' committed input offsets, after the run.

A partition is written "topic:index".
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TextIO

OK = "ok"
FAILED = "failed"
UNKNOWN = "unknown"
COMMITTED = "committed"
UNCOMMITTED = "uncommitted"

Read = tuple[str, int, str]  # partition, offset, value


@dataclass(slots=True)
class Op:
    index: int
    kind: str
    process: str
    outcome: str
    start: float
    end: float
    value: str | None = None
    partition: str | None = None
    offset: int | None = None
    txn: str | None = None
    seq: int | None = None
    action: str | None = None
    isolation: str | None = None
    reads: list[Read] | None = None
    offsets: dict[str, int] | None = None
    detail: str | None = None

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps({k: v for k, v in data.items() if v is not None})

    @staticmethod
    def from_json(line: str) -> Op:
        data: dict[str, Any] = json.loads(line)
        if data.get("reads") is not None:
            data["reads"] = [(str(p), int(o), str(v)) for p, o, v in data["reads"]]
        return Op(**data)


def partition_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class History:
    """Thread-safe and append-only; written through to `path` (JSON lines) if one is given."""

    def __init__(
        self, path: str | Path | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._began = clock()
        self._lock = threading.Lock()
        self.ops: list[Op] = []
        self._file: TextIO | None = open(path, "w") if path is not None else None  # noqa: SIM115

    def now(self) -> float:
        return round(self._clock() - self._began, 6)

    def record(self, kind: str, process: str, outcome: str, start: float, **fields: Any) -> Op:
        """Append one completed operation; `start` is when it was invoked (`now()` then)."""
        with self._lock:
            op = Op(len(self.ops), kind, process, outcome, start, self.now(), **fields)
            self.ops.append(op)
            if self._file is not None:
                self._file.write(op.to_json() + "\n")
            return op

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __iter__(self) -> Iterator[Op]:
        with self._lock:
            return iter(list(self.ops))


class HistoryError(ValueError):
    """A history file that cannot be read back: missing, unreadable, or not one `Op` per
    line; the message names the file (and line)."""


def load(path: str | Path) -> list[Op]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise HistoryError(f"{path}: {reason or exc}") from None
    ops: list[Op] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            ops.append(Op.from_json(line))
        except (ValueError, TypeError, AttributeError) as exc:
            raise HistoryError(
                f"{path}, line {number}: not an operation of a samsa verify history ({exc})"
            ) from None
    return ops


def dump(ops: Iterable[Op], path: str | Path) -> None:
    with open(path, "w") as f:
        for op in ops:
            f.write(op.to_json() + "\n")
