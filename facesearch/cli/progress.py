"""The progress bar of `ingest` and `reembed` (imported by those commands only: rich's progress
machinery is not loaded for a search or `--help`)."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """files/s and faces/s since the start."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0:
            return Text("")
        faces = int(task.fields.get("faces", 0))
        return Text(
            f"{task.completed / elapsed:6.1f} files/s  {faces / elapsed:6.1f} faces/s  "
            f"{faces} faces",
            style="cyan",
        )


class RichIngestProgress:
    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: Any = None
        self._faces = 0

    def start(self, total: int) -> None:
        self._task = self._progress.add_task("ingest", total=total, faces=0)

    def advance(self, files: int, faces: int) -> None:
        self._faces += faces
        self._progress.update(self._task, advance=files, faces=self._faces)


def ingest_bar(label: str, console: Any, *, disable: bool) -> Progress:
    """A progress bar: label, bar, done/total, elapsed, remaining, rates."""
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        RateColumn(),
        console=console,
        disable=disable,
    )
