"""Executors run a plan's tasks, skipping those already in the cache; the local one runs them here, in order.

An executor knows nothing about diffusers or the node catalogue: it is handed
a catalogue (type name -> declaration with `fields`, `outputs`, `version`,
`run`) and the resources nodes reach through their context (the models), and
takes tasks as plain data. Nodes exchange results only through the cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from ..language.refs import Link
from .cache import EntryMissing, NodeCache
from .plan import Plan, Task, decode_links
from .values import read_value, write_value


class Events(Protocol):
    def node_cached(self, node_id: str) -> None: ...
    def node_started(self, node_id: str) -> None: ...
    def node_phase(self, node_id: str, text: str) -> None:
        """What a running node is doing between steps, in a few words ("loading tiny:sd15 (...)", "decoding ...")."""
    def node_step(self, node_id: str, step: int, total: int | None) -> None: ...
    def node_done(self, node_id: str, seconds: float) -> None: ...
    def node_failed(self, node_id: str, error: BaseException) -> None: ...
    def node_warning(self, node_id: str, message: str) -> None: ...


class Resources(Protocol):
    """What nodes reach through their context besides the cache: models. The front supplies it (the Session's pool)."""

    def models(self, task: Task) -> Any:
        """The model registry for this task's device and dtype (loaded lazily: a cached node never asks)."""

    def source(self, data: dict) -> Any:
        """A model source from the plain data a task carries."""

    def node_started(self, task: Task, phase: Callable[[str], None]) -> None:
        """A node is about to run; `phase(text)` reports what the resources do for it meanwhile (imports, model loads)."""

    def retry_after(self, task: Task, error: BaseException) -> bool:
        """True when the error was a lack of memory that releasing other models may cure: run the node once more."""


class Executor(Protocol):
    """Runs a plan's tasks (plain data), reporting through `events`; results land in the cache under each task's key."""

    cache: NodeCache

    def run(self, plan: Plan, events: Events, *, force: set[str] = frozenset(), no_cache: bool = False,
            after_node: Callable[[Task, "NodeResult"], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict[str, "NodeResult"]: ...


class RunStopped(BaseException):
    """The caller asked the run to stop (a newer version of the workflow is waiting): raised at a step or node boundary.

    A BaseException like KeyboardInterrupt, so that no node's error handling swallows it."""


class NodeFailed(Exception):
    def __init__(self, node_id: str, type_name: str, error: BaseException):
        super().__init__(f"node '{node_id}' ({type_name}) failed: {type(error).__name__}: {error}")
        self.node_id = node_id
        self.error = error
        self.hint = str(getattr(error, "hint", "") or "")  # how to fix it, where the error says


@dataclass
class NodeResult:
    status: str  # cached | ran | failed | interrupted
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)


class NodeContext:
    """What a node's run function may use: its inputs, models, seed, and progress reporting."""

    def __init__(self, task: Task, cache: NodeCache, resources: Resources, events: Events,
                 should_stop: Callable[[], bool] | None = None):
        self.task = task
        self._should_stop = should_stop
        self.node_id = task.node_id
        self.seed = task.seed
        self.base_dir = Path(task.base_dir)
        self._cache, self._resources, self._events = cache, resources, events
        self.info: dict[str, Any] = {}

    @property
    def models(self):
        return self._resources.models(self.task)

    def source(self, ref: str):
        return self._resources.source(self.task.models[ref]), self.task.model_ids[ref]

    def load(self, link: Link) -> Any:
        """An upstream node's output, read from its checked cache entry (EntryMissing if it was removed meanwhile)."""
        return self._cache.read_output(self.task.upstream[link.node], link.output, read_value)

    def load_many(self, value: Link | list[Link]) -> list[Any]:
        items: list[Any] = []
        for link in value if isinstance(value, list) else [value]:
            loaded = self.load(link)
            items.extend(loaded if isinstance(loaded, list) else [loaded])
        return items

    def count_many(self, value: Link | list[Link]) -> int:
        """How many images `load_many(value)` would give, from the entries' records (nothing is decoded)."""
        return sum(len(self._cache.output(self.task.upstream[link.node], link.output)[1])
                   for link in (value if isinstance(value, list) else [value]))

    def phase(self, text: str) -> None:
        """Say what the node is doing now that takes time but is no denoising step (loading a model, decoding)."""
        self._events.node_phase(self.node_id, text)

    def step(self, step: int, total: int | None) -> None:
        """Report a finished denoising step; this is also where a requested stop takes effect."""
        self._events.node_step(self.node_id, step, total)
        if self._should_stop is not None and self._should_stop():
            raise RunStopped(f"stopped at step {step} of node '{self.node_id}'")

    def record(self, **info: Any) -> None:
        self.info.update(info)

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the node; kept in the manifest too."""
        self.info.setdefault("warnings", []).append(message)
        self._events.node_warning(self.node_id, message)


def _waiting(node_id: str, events: Events, should_stop: Callable[[], bool] | None) -> Callable[[], None]:
    """While another process holds a node's entry lock: say so once, and stop when asked to."""
    told = []

    def waiting() -> None:
        if should_stop is not None and should_stop():
            raise RunStopped(f"stopped while waiting for another process to compute node '{node_id}'")
        if not told:
            told.append(True)
            events.node_warning(node_id, "another process is computing this node: waiting for its result")

    return waiting


class LocalExecutor:
    """Runs tasks one after another in this process; long-lived (a Session keeps one), events per run."""

    def __init__(self, cache: NodeCache, catalogue: Mapping[str, Any], resources: Resources):
        self.cache = cache
        self.catalogue = catalogue
        self.resources = resources
        self.last_results: dict[str, NodeResult] = {}  # also holds the finished nodes when a run stops early

    def run(self, plan: Plan, events: Events, *, force: set[str] = frozenset(), no_cache: bool = False,
            after_node: Callable[[Task, NodeResult], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict[str, NodeResult]:
        """Run every task of the plan; raises NodeFailed (after recording it) when one fails, and RunStopped at the
        next denoising step or node boundary once `should_stop()` is true."""
        results: dict[str, NodeResult] = {}
        self.last_results = results
        owners = {task.key: node_id for node_id, task in plan.tasks.items()}

        def damaged(key: str, reason: str) -> None:
            node = owners.get(key)
            if node is not None:
                events.node_warning(node, f"its cache entry was damaged ({reason}): moved to the cache's quarantine/ "
                                          "folder, the node runs again")

        self.cache.on_problem = damaged
        try:
            for node_id in plan.order:
                if should_stop is not None and should_stop():
                    raise RunStopped(f"stopped before node '{node_id}'")
                task = plan.tasks[node_id]
                replace = no_cache or node_id in force
                result = self._from_cache(task, events) if not replace else None
                if result is None:
                    result = self._compute(plan, task, events, results, replace=replace, should_stop=should_stop)
                results[node_id] = result
                if after_node is not None:
                    for attempt in range(len(task.upstream) + 2):
                        try:
                            after_node(task, result)
                            break
                        except EntryMissing:  # an input entry was removed by another process: make it again
                            if attempt > len(task.upstream):
                                raise
                            self._ensure_upstream(plan, task, events, should_stop)
        finally:
            self.cache.on_problem = None
        return results

    def _from_cache(self, task: Task, events: Events) -> NodeResult | None:
        entry = self.cache.lookup(task.key)
        if entry is None:
            return None
        events.node_cached(task.node_id)
        return NodeResult("cached", info=entry.get("info", {}))

    def _compute(self, plan: Plan, task: Task, events: Events, results: dict[str, NodeResult], *, replace: bool,
                 should_stop: Callable[[], bool] | None) -> NodeResult:
        """Run the node, holding its entry's lock unless it replaces an entry (--no-cache, --force): another process
        computing the same key meanwhile is waited for and its entry reused, never computed twice."""
        if replace:
            return self._execute(plan, task, events, results, replace=True, should_stop=should_stop)
        with self.cache.acquire(task.key, _waiting(task.node_id, events, should_stop)):
            result = self._from_cache(task, events)
            if result is not None:
                return result
            return self._execute(plan, task, events, results, replace=False, should_stop=should_stop)

    def _ensure_upstream(self, plan: Plan, task: Task, events: Events, should_stop: Callable[[], bool] | None,
                         depth: int = 0) -> None:
        """Upstream entries removed since they were checked (another process's `cache clear`, a damaged file) are
        computed again before the node reads them."""
        for node_id, key in task.upstream.items():
            if self.cache.lookup(key) is None and node_id in plan.tasks and depth < len(plan.tasks):
                upstream = plan.tasks[node_id]
                with self.cache.acquire(key, _waiting(node_id, events, should_stop)):
                    if self.cache.lookup(key) is None:
                        events.node_warning(task.node_id, f"the cache entry of its input '{node_id}' was removed or "
                                                          "damaged meanwhile: computing it again")
                        self._ensure_upstream(plan, upstream, events, should_stop, depth + 1)
                        self._execute(plan, upstream, events, {}, replace=False, should_stop=should_stop, quiet=True)

    def fields(self, task: Task):
        """The node's validated fields, rebuilt from the task's plain data."""
        return self.catalogue[task.type_name].model.model_validate(decode_links(task.fields))

    def _execute(self, plan: Plan, task: Task, events: Events, results: dict[str, NodeResult], *, replace: bool,
                 should_stop: Callable[[], bool] | None = None, quiet: bool = False) -> NodeResult:
        node_type = self.catalogue[task.type_name]
        context = NodeContext(task, self.cache, self.resources, events, should_stop)
        if not quiet:
            events.node_started(task.node_id)
        started = time.perf_counter()
        retried, refetches = False, 0
        try:
            fields = self.fields(task)
            self._ensure_upstream(plan, task, events, should_stop)
            while True:
                self.resources.node_started(task, context.phase)
                try:
                    outputs = node_type.run(context, fields)
                    break
                except EntryMissing:
                    # an input entry vanished under the node: compute it again, then the node. One `cache clear` may
                    # remove each input in turn while the node reads them, so each input may need this once
                    if refetches > len(task.upstream):
                        raise
                    refetches += 1
                    self._ensure_upstream(plan, task, events, should_stop)
                except Exception as error:  # noqa: BLE001
                    if retried or not self.resources.retry_after(task, error):
                        raise
                    retried = True
                    context.warn(f"out of memory ({type(error).__name__}): released the other models and ran the node again")
            unknown = set(outputs) - set(node_type.outputs)
            if unknown:
                raise RuntimeError(f"produced undeclared outputs {sorted(unknown)}")
            seconds = time.perf_counter() - started
            stored = {name: (node_type.outputs[name], value) for name, value in outputs.items()}
            self.cache.put(task.key, stored, write_value, {
                "node_id": task.node_id, "type": task.type_name, "version": node_type.version,
                "default_output": node_type.default_output, "seconds": round(seconds, 4), "info": context.info,
            }, replace=replace)
        except (KeyboardInterrupt, RunStopped):
            results[task.node_id] = NodeResult("interrupted", time.perf_counter() - started, context.info)
            raise
        except Exception as error:  # a node's failure is reported as data, not a crash
            seconds = time.perf_counter() - started
            failed = {**context.info, "error": f"{type(error).__name__}: {error}"}
            if getattr(error, "hint", ""):
                failed["fix"] = str(error.hint)
            results[task.node_id] = NodeResult("failed", seconds, failed)
            events.node_failed(task.node_id, error)
            raise NodeFailed(task.node_id, task.type_name, error) from error
        if not quiet:
            events.node_done(task.node_id, seconds)
        return NodeResult("ran", seconds, context.info)
