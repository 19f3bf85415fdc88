"""Progress of a run: a live line per node on a terminal, plain lines in logs, or nothing but errors."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table


class PlainEvents:
    """One line per event, no ANSI: for CI logs and pipes."""

    def __init__(self, types: dict[str, str], stream=None, quiet: bool = False):
        self.types = types
        self.stream = stream or sys.stdout
        self.quiet = quiet

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def start(self, order: list[str]) -> None:
        self._say(f"{len(order)} nodes: " + ", ".join(order))

    def node_cached(self, node_id: str) -> None:
        self._say(f"cached   {node_id} ({self.types[node_id]})")

    def node_started(self, node_id: str) -> None:
        self._say(f"running  {node_id} ({self.types[node_id]})")

    def node_step(self, node_id: str, step: int, total: int | None) -> None:
        if total and total >= 10 and step * 10 // total != (step - 1) * 10 // total:  # every 10 %
            self._say(f"         {node_id}: step {step}/{total}")

    def node_done(self, node_id: str, seconds: float) -> None:
        self._say(f"done     {node_id} ({self.types[node_id]}) in {seconds:.2f} s")

    def node_failed(self, node_id: str, error: BaseException) -> None:
        print(f"FAILED   {node_id} ({self.types[node_id]}): {type(error).__name__}: {error}", file=sys.stderr, flush=True)

    def node_warning(self, node_id: str, message: str) -> None:
        print(f"warning: {node_id}: {message}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        pass


class LiveEvents(PlainEvents):
    """A rich progress line per node: queued, cached, running with a step bar, done with seconds."""

    def __init__(self, types: dict[str, str], console: Console):
        super().__init__(types)
        self.console = console
        self.progress = Progress(
            TextColumn("{task.fields[state]:<8}", style="bold"),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[seconds]}"),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, int] = {}
        self.started: dict[str, float] = {}

    def start(self, order: list[str]) -> None:
        for node_id in order:
            self.tasks[node_id] = self.progress.add_task(f"{node_id} [dim]({self.types[node_id]})[/]", total=None,
                                                         state="queued", seconds="")
        self.progress.start()

    def _update(self, node_id: str, **fields) -> None:
        self.progress.update(self.tasks[node_id], **fields)

    def node_cached(self, node_id: str) -> None:
        self._update(node_id, state="[cyan]cached[/]", total=1, completed=1)

    def node_started(self, node_id: str) -> None:
        self.started[node_id] = time.perf_counter()
        self._update(node_id, state="[yellow]running[/]")

    def node_step(self, node_id: str, step: int, total: int | None) -> None:
        self._update(node_id, total=total, completed=step)

    def node_done(self, node_id: str, seconds: float) -> None:
        task = self.progress.tasks[self.tasks[node_id]]
        total = task.total or 1
        self._update(node_id, state="[green]done[/]", total=total, completed=total, seconds=f"{seconds:.2f} s")

    def node_failed(self, node_id: str, error: BaseException) -> None:
        self._update(node_id, state="[red]FAILED[/]")

    def node_warning(self, node_id: str, message: str) -> None:
        self.progress.console.print(f"[yellow]warning[/]: {node_id}: {message}")

    def stop(self) -> None:
        self.progress.stop()


def summary_table(rows: list[tuple[str, str, str, float]]) -> Table:
    table = Table(title="summary")
    table.add_column("node", style="bold")
    table.add_column("type")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    colours = {"ran": "green", "cached": "cyan", "failed": "red", "interrupted": "red", "not run": "dim"}
    for node_id, type_name, status, seconds in rows:
        colour = colours.get(status, "white")
        table.add_row(node_id, type_name, f"[{colour}]{status}[/]", f"{seconds:.2f}" if status == "ran" else "")
    return table
