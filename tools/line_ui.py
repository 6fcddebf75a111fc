"""The live view of a line run: a rich progress bar with how many DUTs are in each stage.

The runner in ``fixture/`` reports through two calls (``stage`` when a DUT enters
a stage, ``done`` when its record is final); this module turns them into one
progress bar whose description counts DUTs per stage, e.g.::

    line  ━━━━━━━━━━━━━━━━━━━╸━━━━━━━  31/40  blinkup 2 · connect 3 · test 1 · blessed 29 · failed 2

With ``quiet`` (``--json``) nothing is drawn, so stdout stays one JSON object.
"""

from __future__ import annotations

import sys
from collections import Counter
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from impfactory.fixture.record import DutRecord


class LineProgress:
    """A context manager that shows the run's progress on stderr."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total = total
        self.quiet = quiet
        self.where: dict[int, str] = {}
        #: DUTs per stage, kept as they move (not recounted at every event).
        self.active: Counter[str] = Counter()
        self.finished: Counter[str] = Counter()
        self._progress: Progress | None = None
        self._task: int | None = None

    def __enter__(self) -> LineProgress:
        if not self.quiet:
            console = Console(file=sys.stderr)
            self._progress = Progress(
                TextColumn("[bold]line"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.description}"),
                console=console, transient=False, refresh_per_second=8,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("starting", total=self.total)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.__exit__(exc_type, exc, tb)

    def stage(self, index: int, stage: str) -> None:
        """DUT ``index`` entered ``stage``."""
        self._leave(index)
        self.where[index] = stage
        self.active[stage] += 1
        self._refresh()

    def done(self, record: DutRecord) -> None:
        """DUT ``record.index`` is finished, blessed or failed."""
        self._leave(record.index)
        self.finished["blessed" if record.blessed else "failed"] += 1
        self._refresh(advance=1)

    def _leave(self, index: int) -> None:
        old = self.where.pop(index, None)
        if old is not None:
            self.active[old] -= 1
            if not self.active[old]:
                del self.active[old]

    def description(self) -> str:
        parts = [f"{name} {count}" for name, count in sorted(self.active.items())]
        parts += [f"{name} {self.finished[name]}" for name in ("blessed", "failed")]
        return " · ".join(parts)

    def _refresh(self, advance: int = 0) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=self.description(),  # type: ignore[arg-type]
                                  advance=advance)
