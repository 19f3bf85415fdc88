"""The local executor: run a plan's tasks in order, skipping those already in the cache.

It knows nothing about diffusers: nodes get a context to read their inputs
from the cache, reach the model registry, and report steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ..language.refs import Link
from ..nodes import NODE_TYPES
from .cache import NodeCache
from .plan import Plan, Task
from .values import read_value, write_value


class Events(Protocol):
    def node_cached(self, node_id: str) -> None: ...
    def node_started(self, node_id: str) -> None: ...
    def node_step(self, node_id: str, step: int, total: int | None) -> None: ...
    def node_done(self, node_id: str, seconds: float) -> None: ...
    def node_failed(self, node_id: str, error: BaseException) -> None: ...
    def node_warning(self, node_id: str, message: str) -> None: ...


class NodeFailed(Exception):
    def __init__(self, node_id: str, type_name: str, error: BaseException):
        super().__init__(f"node '{node_id}' ({type_name}) failed: {type(error).__name__}: {error}")
        self.node_id = node_id
        self.error = error


@dataclass
class NodeResult:
    status: str  # cached | ran | failed | interrupted
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)


class NodeContext:
    """What a node's run function may use: its inputs, models, seed, and progress reporting."""

    def __init__(self, task: Task, executor: "LocalExecutor", base_dir: Path):
        self.task = task
        self.node_id = task.node_id
        self.seed = task.seed
        self.base_dir = base_dir
        self._executor = executor
        self.info: dict[str, Any] = {}

    @property
    def models(self):
        return self._executor.registry(self.task)

    def source(self, ref: str):
        return self.task.models[ref], self.task.model_ids[ref]

    def load(self, link: Link) -> Any:
        kind, files = self._executor.cache.output(self.task.upstream[link.node], link.output)
        return read_value(kind, files)

    def load_many(self, value: Link | list[Link]) -> list[Any]:
        items: list[Any] = []
        for link in value if isinstance(value, list) else [value]:
            loaded = self.load(link)
            items.extend(loaded if isinstance(loaded, list) else [loaded])
        return items

    def step(self, step: int, total: int | None) -> None:
        self._executor.events.node_step(self.node_id, step, total)

    def record(self, **info: Any) -> None:
        self.info.update(info)

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the node; kept in the manifest too."""
        self.info.setdefault("warnings", []).append(message)
        self._executor.events.node_warning(self.node_id, message)


class LocalExecutor:
    def __init__(self, cache: NodeCache, models_dir: Path, events: Events):
        self.cache = cache
        self.models_dir = models_dir
        self.events = events
        self._registry = None
        self.last_results: dict[str, NodeResult] = {}  # also holds the finished nodes when a run stops early

    @property
    def environment(self) -> dict[str, Any]:
        """Device and determinism facts, known once a model was loaded (a fully cached run loads none)."""
        return self._registry.environment() if self._registry is not None else {}

    @property
    def loads(self) -> list[str]:
        return list(self._registry.loads) if self._registry is not None else []

    def registry(self, task: Task):
        if self._registry is None:
            from ..models.registry import ModelRegistry

            self._registry = ModelRegistry(task.device, task.dtype, self.models_dir, self.cache.hashes, task.deterministic)
        return self._registry

    def run(self, plan: Plan, base_dir: Path, *, force: set[str] = frozenset(), no_cache: bool = False,
            after_node: Callable[[Task, NodeResult], None] | None = None) -> dict[str, NodeResult]:
        """Run every task of the plan; raises NodeFailed (after recording it) when one fails."""
        results: dict[str, NodeResult] = {}
        self.last_results = results
        for node_id in plan.order:
            task = plan.tasks[node_id]
            if not no_cache and node_id not in force and self.cache.has(task.key):
                result = NodeResult("cached", info=self.cache.read_entry(task.key).get("info", {}))
                self.events.node_cached(node_id)
            else:
                result = self._execute(task, base_dir, results)
            results[node_id] = result
            if after_node is not None:
                after_node(task, result)
        return results

    def _execute(self, task: Task, base_dir: Path, results: dict[str, NodeResult]) -> NodeResult:
        node_type = NODE_TYPES[task.type_name]
        context = NodeContext(task, self, base_dir)
        self.events.node_started(task.node_id)
        started = time.perf_counter()
        try:
            outputs = node_type.run(context, task.fields)
            unknown = set(outputs) - set(node_type.outputs)
            if unknown:
                raise RuntimeError(f"produced undeclared outputs {sorted(unknown)}")
            seconds = time.perf_counter() - started
            stored = {name: (node_type.outputs[name], value) for name, value in outputs.items()}
            self.cache.put(task.key, stored, write_value, {
                "node_id": task.node_id, "type": task.type_name, "version": node_type.version,
                "default_output": node_type.default_output, "seconds": round(seconds, 4), "info": context.info,
            })
        except KeyboardInterrupt:
            results[task.node_id] = NodeResult("interrupted", time.perf_counter() - started, context.info)
            raise
        except Exception as error:  # a node's failure is reported as data, not a crash
            seconds = time.perf_counter() - started
            results[task.node_id] = NodeResult("failed", seconds, {**context.info, "error": f"{type(error).__name__}: {error}"})
            self.events.node_failed(task.node_id, error)
            raise NodeFailed(task.node_id, task.type_name, error) from error
        self.events.node_done(task.node_id, seconds)
        return NodeResult("ran", seconds, context.info)
