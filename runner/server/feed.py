"""A job's progress as it runs: the same events `runner run` prints (node started, step, done, cached, failed, what
a node is doing between steps), kept in memory for the server's event streams, its job answers and its page."""

from __future__ import annotations

import threading
import time

from ..engine.progress import StepClock, format_rate

MAX_EVENTS = 20_000  # a job's event history in memory; steps beyond it are summed up in `progress` only


class Feed:
    """Events of one job, in order, and the summary a queue listing shows (nodes done, the running node's step)."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.closed = False  # the job is over: no event follows
        self.progress: dict = {"nodes": 0, "done": 0, "node": None, "step": 0, "steps": 0, "rate": None}
        self._lock = threading.Lock()

    def add(self, event: str, **data) -> None:
        with self._lock:
            if len(self.events) < MAX_EVENTS or event in ("job", "end", "node_done", "node_failed", "node_cached"):
                self.events.append({"event": event, "time": round(time.time(), 3), **data})

    def since(self, index: int) -> list[dict]:
        with self._lock:
            return self.events[index:]

    def close(self, state: str, **data) -> None:
        self.add("end", state=state, **data)
        self.closed = True

    def sink(self, label: str = ""):
        """The factory Session.run takes (`events=`): given the run's node types, the object told of its progress."""
        return lambda types: RunEvents(self, types, label)


class RunEvents:
    """PlainEvents' methods, recorded into a Feed instead of printed (one per run: a sweep's variants each have one,
    labelled with the variant)."""

    def __init__(self, feed: Feed, types: dict[str, str], label: str):
        self.feed, self.types, self.label = feed, types, label
        self.clocks: dict[str, StepClock] = {}

    def _add(self, event: str, node_id: str | None = None, **data) -> None:
        if node_id is not None:
            data = {"node": node_id, "type": self.types.get(node_id, ""), **data}
        if self.label:
            data["variant"] = self.label
        self.feed.add(event, **data)

    def start(self, order: list[str]) -> None:
        self.feed.progress.update(nodes=self.feed.progress["nodes"] + len(order))
        self._add("run_started", nodes=[{"node": node_id, "type": self.types[node_id]} for node_id in order])

    def node_cached(self, node_id: str) -> None:
        self.feed.progress["done"] += 1
        self._add("node_cached", node_id)

    def node_started(self, node_id: str) -> None:
        self.clocks[node_id] = StepClock()
        self.feed.progress.update(node=node_id, step=0, steps=0, rate=None)
        self._add("node_started", node_id)

    def node_phase(self, node_id: str, text: str) -> None:
        self._add("node_phase", node_id, text=text)

    def node_step(self, node_id: str, step: int, total: int | None) -> None:
        clock = self.clocks.setdefault(node_id, StepClock())
        clock.step(step, total)
        rate = clock.rate()
        self.feed.progress.update(node=node_id, step=step, steps=total or 0, rate=round(rate, 3) if rate else None)
        self._add("node_step", node_id, step=step, total=total, rate=round(rate, 3) if rate else None,
                  rate_text=format_rate(rate))

    def node_done(self, node_id: str, seconds: float) -> None:
        self.feed.progress["done"] += 1
        self.feed.progress.update(node=None, step=0, steps=0, rate=None)
        clock = self.clocks.get(node_id)
        steps = clock.last[0] if clock is not None and clock.last is not None else None
        rate = clock.rate() if clock is not None else None
        self._add("node_done", node_id, seconds=round(seconds, 3), steps=steps, rate=round(rate, 3) if rate else None)

    def node_failed(self, node_id: str, error: BaseException) -> None:
        self._add("node_failed", node_id, error=f"{type(error).__name__}: {error}")

    def node_warning(self, node_id: str, message: str) -> None:
        self._add("node_warning", node_id, message=message)

    def stop(self) -> None:
        self.feed.progress.update(node=None)
