"""What a long command is doing, on a terminal: its phase, a count or bar where there is one,
and the time spent in it (rich's live progress display, erased when the command ends).

    with Progress.for_command(as_json=args.json) as progress:
        progress.phase("starting the broker")
        progress.phase("running the workload", total=duration_s)
        progress.update(elapsed_s)

Quiet when `--json` is given or stdout is not a terminal (a pipe, a file, a test): then every
method does nothing, and what the command prints is exactly what it printed before. Any thread
may report; rich serialises the updates.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, enabled: bool) -> None:
        self._rich: RichProgress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._rich = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=sys.stdout),
                transient=True,
            )

    @classmethod
    def for_command(cls, as_json: bool = False) -> Progress:
        """Shown only to a person: not with --json, not when stdout is not a terminal."""
        return cls(enabled=not as_json and sys.stdout.isatty())

    @property
    def enabled(self) -> bool:
        return self._rich is not None

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rich is not None:
            self._rich.stop()

    def phase(self, description: str, total: float | None = None) -> None:
        """A new phase replaces the last; with `total`, a bar and a count (`update`/`advance`)."""
        if self._rich is None:
            return
        if self._task is not None:
            self._rich.remove_task(self._task)
        self._task = self._rich.add_task(description, total=total)

    def update(self, completed: float) -> None:
        if self._rich is not None and self._task is not None:
            self._rich.update(self._task, completed=completed)

    def advance(self, steps: float = 1) -> None:
        if self._rich is not None and self._task is not None:
            self._rich.advance(self._task, steps)


QUIET = Progress(enabled=False)
