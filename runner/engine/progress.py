"""Progress of a run: a live line per node on a terminal, plain lines in logs, or nothing but errors.

What people know from diffusers (tqdm) and ComfyUI: for each node the step bar n/N, its rate, the time spent and
the time left; and, between steps, what takes the time (importing the libraries, loading a model and how large it
is, decoding the latents), so that no row sits at 0/? or N/N without a word.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import TYPE_CHECKING

# rich is imported only by the live display and the summary table: a quiet or plain run never draws either, and
# rich's modules are a good part of a cached run's start (bench/start_time.py)
if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


class StepClock:
    """One node's timing: when it started, its first and latest step; the rate and the time left follow."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: tuple[int, float] | None = None  # (step, when): the rate is measured from the first step reported
        self.last: tuple[int, float] | None = None
        self.total: int | None = None

    def step(self, step: int, total: int | None) -> None:
        now = time.perf_counter()
        if self.first is None or step <= self.first[0]:  # a second call of the node (a retry) starts over
            self.first = (step, now)
        self.last = (step, now)
        self.total = total

    def rate(self) -> float | None:
        """Steps per second between the first step and the latest one (None until two steps are known)."""
        if self.first is None or self.last is None or self.last[0] <= self.first[0] or self.last[1] <= self.first[1]:
            return None
        return (self.last[0] - self.first[0]) / (self.last[1] - self.first[1])

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds until the last step, counting down from the latest step reported."""
        rate = self.rate()
        if rate is None or self.total is None or self.last is None:
            return None
        left = (self.total - self.last[0]) / rate
        if now is not None:
            left -= now - self.last[1]
        return max(0.0, left)

    def elapsed(self, now: float | None = None) -> float:
        return (now or time.perf_counter()) - self.started


def format_rate(rate: float | None) -> str:
    """'3.10 it/s', or '12.7 s/it' below one step a second (as tqdm writes it)."""
    if not rate:
        return ""
    return f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it"


def format_clock(seconds: float) -> str:
    """'0:07', '12:34', '1:02:03' (as tqdm and rich show elapsed and remaining time)."""
    seconds = int(seconds)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def format_seconds(seconds: float | None) -> str:
    """'42 s', '3:05', '1:02:03'."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class PlainEvents:
    """One line per event, no ANSI: for CI logs and pipes. Steps every 10 % (every step below 10 steps) with their
    rate and the time left; one line per phase (a model load, the decode after the last step)."""

    def __init__(self, types: dict[str, str], stream=None, quiet: bool = False, label: str = ""):
        self.types = types
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.label = label  # before every line: which run it is about, when several print at once (a sweep's variants)
        self.clocks: dict[str, StepClock] = {}

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(self.label + text, file=self.stream, flush=True)

    def _clock(self, node_id: str) -> StepClock:
        return self.clocks.setdefault(node_id, StepClock())

    def start(self, order: list[str]) -> None:
        self._say(f"{len(order)} nodes: " + ", ".join(order))

    def node_cached(self, node_id: str) -> None:
        self._say(f"cached   {node_id} ({self.types[node_id]})")

    def node_started(self, node_id: str) -> None:
        self.clocks[node_id] = StepClock()
        self._say(f"running  {node_id} ({self.types[node_id]})")

    def node_phase(self, node_id: str, text: str) -> None:
        self._say(f"         {node_id}: {text}")

    def node_step(self, node_id: str, step: int, total: int | None) -> None:
        clock = self._clock(node_id)
        clock.step(step, total)
        if not total:
            return
        if total >= 10 and step * 10 // total == (step - 1) * 10 // total:  # every 10 %
            return
        facts = [fact for fact in (format_rate(clock.rate()),
                                   f"ETA {format_seconds(clock.remaining())}" if step < total and clock.rate() else "")
                 if fact]
        self._say(f"         {node_id}: step {step}/{total}" + (f" ({', '.join(facts)})" if facts else ""))

    def node_done(self, node_id: str, seconds: float) -> None:
        clock = self.clocks.get(node_id)
        steps = ""
        if clock is not None and clock.last is not None:
            rate = format_rate(clock.rate())
            count = clock.last[0]
            steps = f" ({count} step{'' if count == 1 else 's'}" + (f", {rate}" if rate else "") + ")"
        self._say(f"done     {node_id} ({self.types[node_id]}) in {seconds:.2f} s{steps}")

    def node_failed(self, node_id: str, error: BaseException) -> None:
        print(f"{self.label}FAILED   {node_id} ({self.types[node_id]}): {type(error).__name__}: {error}", file=sys.stderr,
              flush=True)

    def node_warning(self, node_id: str, message: str) -> None:
        print(f"{self.label}warning: {node_id}: {message}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        pass


@functools.cache
def _node_columns() -> tuple[type, type]:
    """(_NodeBar, _NodeColumn): rich column classes, made on the first live display (they subclass rich's)."""
    from rich.progress import BarColumn, ProgressColumn
    from rich.progress_bar import ProgressBar
    from rich.text import Text

    class _NodeBar(BarColumn):
        """Empty while queued, pulsing while a running node has no step count yet (loading), filling with the steps."""

        def render(self, task) -> ProgressBar:
            state = task.fields["key"]
            if state == "queued" or (state == "failed" and task.total is None):
                return ProgressBar(total=1, completed=0, width=self.bar_width, style=self.style)
            return super().render(task)

    class _NodeColumn(ProgressColumn):
        """One column of a node's row, rendered from its LiveEvents record (`what`: steps, rate, elapsed, eta or
        note)."""

        def __init__(self, events: "LiveEvents", what: str):
            super().__init__()
            self.events, self.what = events, what

        def render(self, task) -> Text:
            note = self.what == "note"
            return Text(self.events.cell(task.fields["node"], self.what), style="dim" if note else "", no_wrap=True,
                        overflow="ellipsis" if note else "fold")

    return _NodeBar, _NodeColumn


class LiveEvents(PlainEvents):
    """A rich progress line per node: queued, cached, running with its step bar (n/N, it/s, elapsed, ETA) or what it
    is doing between steps (importing, loading a model, decoding), done with its seconds."""

    def __init__(self, types: dict[str, str], console: Console):
        from rich.progress import Progress, TextColumn

        _NodeBar, _NodeColumn = _node_columns()
        super().__init__(types)
        self.console = console
        self.progress = Progress(
            TextColumn("{task.fields[state]:<8}", style="bold"),
            TextColumn("{task.description}"),
            _NodeBar(bar_width=24),
            _NodeColumn(self, "steps"),
            _NodeColumn(self, "rate"),
            _NodeColumn(self, "elapsed"),
            _NodeColumn(self, "eta"),
            _NodeColumn(self, "note"),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.notes: dict[str, str] = {}  # node -> the phase it is in
        self.finished: dict[str, float] = {}  # node -> its seconds, once done
        self.failed: dict[str, float] = {}  # node -> seconds until it failed

    def start(self, order: list[str]) -> None:
        for node_id in order:
            self.tasks[node_id] = self.progress.add_task(f"{node_id} [dim]({self.types[node_id]})[/]", total=None,
                                                         state="queued", key="queued", node=node_id)
        self.progress.start()

    def cell(self, node_id: str, what: str) -> str:
        """The text of one column of a node's row, now."""
        clock = self.clocks.get(node_id)
        if what == "note":
            return self.notes.get(node_id, "")
        if clock is None:
            return ""
        if what == "steps":
            if clock.last is None or not clock.total:
                return ""
            return f"{clock.total if node_id in self.finished else clock.last[0]}/{clock.total}"
        if what == "rate":
            return format_rate(clock.rate())
        if what == "elapsed":
            if node_id in self.finished:
                return f"{self.finished[node_id]:.2f} s"
            return format_clock(self.failed.get(node_id, clock.elapsed()))
        if what == "eta" and node_id not in self.finished and node_id not in self.failed and clock.last is not None \
                and clock.total:
            left = clock.remaining(time.perf_counter())
            return "" if left is None or clock.last[0] >= clock.total else f"ETA {format_clock(left + 0.999)}"
        return ""

    def _update(self, node_id: str, **fields) -> None:
        self.progress.update(self.tasks[node_id], **fields)

    def node_cached(self, node_id: str) -> None:
        self._update(node_id, state="[cyan]cached[/]", key="cached", total=1, completed=1)

    def node_started(self, node_id: str) -> None:
        clock = StepClock()
        self.clocks[node_id] = clock
        self.started[node_id] = clock.started
        self.notes[node_id] = ""
        self._update(node_id, state="[yellow]running[/]", key="running")

    def node_phase(self, node_id: str, text: str) -> None:
        self.notes[node_id] = text
        self.progress.refresh()

    def node_step(self, node_id: str, step: int, total: int | None) -> None:
        self._clock(node_id).step(step, total)
        self.notes[node_id] = ""
        self._update(node_id, total=total, completed=step)

    def node_done(self, node_id: str, seconds: float) -> None:
        task = self.progress.tasks[self.tasks[node_id]]
        total = task.total or 1
        self.finished[node_id] = seconds
        self.notes[node_id] = ""
        self._update(node_id, state="[green]done[/]", key="done", total=total, completed=total)

    def node_failed(self, node_id: str, error: BaseException) -> None:
        self.failed[node_id] = self.clocks[node_id].elapsed() if node_id in self.clocks else 0.0
        self._update(node_id, state="[red]FAILED[/]", key="failed")

    def node_warning(self, node_id: str, message: str) -> None:
        self.progress.console.print(f"[yellow]warning[/]: {node_id}: {message}")

    def stop(self) -> None:
        self.progress.stop()


def summary_table(rows: list[tuple[str, str, str, float]]) -> Table:
    from rich.table import Table

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
