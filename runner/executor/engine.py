"""Executors run a plan's tasks, skipping those already in the cache; the local one runs them here, in order.

An executor knows nothing about diffusers or the node catalogue: it is handed
a catalogue (type name -> declaration with `fields`, `outputs`, `version`,
`run`) and the resources nodes reach through their context (the models), and
takes tasks as plain data. Nodes exchange results only through the cache.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from ..core.errors import fix_of
from ..language.refs import Link
from .cache import EntryMissing, NodeCache
from .plan import Plan, Task, batch_member, decode_links
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
    """Runs a plan's tasks (plain data), reporting through `events`; results land in the cache under each task's key.

    A whole lifecycle: `start` joins or starts what it runs on (idempotent; a CommandError when it cannot, before
    any run folder is made), `run` runs one plan, `describe` is the manifest's record of the run this thread just
    ran, `capacity` says how many runs may share it side by side, `close` releases what `start` took. Every executor
    runs plans through the one scheduling loop, `run_plan`, supplying only where a task is computed (a `Backend`)."""

    name: str  # what the manifest's executor record calls it
    cache: NodeCache
    loads_here: bool  # whether nodes load their models in this process (the Session's pool and budget apply)

    def start(self) -> None: ...

    def run(self, plan: Plan, events: Events, *, force: set[str] = frozenset(), no_cache: bool = False,
            after_node: Callable[[Task, "NodeResult"], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict[str, "NodeResult"]:
        """Every task's result. A failed, stopped or interrupted run raises NodeFailed, RunStopped or
        KeyboardInterrupt carrying `.results`: the nodes finished until then, and the one that failed or stopped."""

    def describe(self) -> dict[str, Any]: ...

    def capacity(self) -> int: ...

    def close(self) -> None: ...


class RunStopped(BaseException):
    """The caller asked the run to stop (a newer version of the workflow is waiting, a job was cancelled): raised at a
    step or node boundary. `reason`: why, when `should_stop` said (it returned a string rather than True).

    A BaseException like KeyboardInterrupt, so that no node's error handling swallows it."""

    def __init__(self, message: str, reason: object = None):
        super().__init__(message)
        self.reason = reason if isinstance(reason, str) else None


TRACEBACK_INFO = "traceback_text"  # a failed node's info key for its traceback, until the run writes it to a file


class NodeFailed(Exception):
    """A node raised: the run stops (and the failure is the node's, recorded as data, not a crash)."""

    def __init__(self, node_id: str, type_name: str, error: BaseException):
        super().__init__(f"node '{node_id}' ({type_name}) failed: {type(error).__name__}: {error}")
        self.node_id = node_id
        self.error = error
        self.hint = fix_of(error)  # how to fix it, where the error says


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
        self._steps: tuple[int, float] | None = None  # (step, when): the first step of the latest denoising loop

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
        """Report a finished denoising step; this is also where a requested stop takes effect. The node's record keeps
        the denoising speed (steps_per_second), measured from its first step as the progress line measures it (a
        second loop, such as a decoder's after its prior, starts the measure again)."""
        now = time.perf_counter()
        if self._steps is None or step <= self._steps[0]:
            self._steps = (step, now)
        elif now > self._steps[1]:
            self.info["steps_per_second"] = round((step - self._steps[0]) / (now - self._steps[1]), 3)
        self._events.node_step(self.node_id, step, total)
        reason = self._should_stop() if self._should_stop is not None else None
        if reason:
            raise RunStopped(f"stopped at step {step} of node '{self.node_id}'", reason)

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
        reason = should_stop() if should_stop is not None else None
        if reason:
            raise RunStopped(f"stopped while waiting for another process to compute node '{node_id}'", reason)
        if not told:
            told.append(True)
            events.node_warning(node_id, "another process is computing this node: waiting for its result")

    return waiting


@dataclass
class Completion:
    """What became of a task a backend was given: "ran", "cached" (its entry was there, or landed meanwhile),
    "failed" (with the error; `result` holds what the node recorded) or "retry" (its worker died: run it again)."""

    status: str
    result: NodeResult
    error: BaseException | None = None


class Backend(Protocol):
    """Where a scheduling loop's tasks are computed: this process (LocalExecutor) or Ray workers (RayExecutor)."""

    cache: NodeCache

    def submit(self, plan: Plan, task: Task, *, replace: bool, events: Events,
               should_stop: Callable[[], bool] | None, run: dict) -> Completion | Any | None:
        """Start computing a task whose inputs are done: a Completion when it is done already (found in the cache,
        or computed at once), a handle for `wait` when it runs elsewhere, None when it cannot start now (no worker
        free, or another run computing the same key): the loop asks again after waiting. `run` is the loop's record
        of this run (the same dict on every call), for state a backend keeps per run."""

    def wait(self, running: dict[Any, str], timeout: float) -> list[tuple[Any, Completion]]:
        """The handles among `running` (handle -> node id) that completed within `timeout` seconds."""

    def cancel(self, running: dict[Any, str]) -> None:
        """Stop what is running (the run failed or was stopped)."""

    def restore_inputs(self, plan: Plan, task: Task, events: Events, should_stop: Callable[[], bool] | None) -> bool:
        """Compute again the entries of a task's inputs removed since (another process's `cache clear`); False when
        this backend cannot, and the removal fails the run."""


WAIT_S = 0.5  # how long the loop waits for a task elsewhere (or for another run's) before looking again


def cached(cache: NodeCache, task: Task) -> Completion | None:
    """The task's checked cache entry as a completion, or None when there is none (a damaged one is quarantined)."""
    entry = cache.lookup(task.key)
    return None if entry is None else Completion("cached", NodeResult("cached", info=entry.get("info", {})))


def run_plan(backend: Backend, plan: Plan, events: Events, *, force: set[str] = frozenset(), no_cache: bool = False,
             after_node: Callable[[Task, NodeResult], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> dict[str, NodeResult]:
    """The one scheduling loop: tasks in plan order as soon as the nodes they read are done; cache hits are not
    computed; each finished node goes to `after_node` (publishing), computing again inputs removed meanwhile; a
    failure stops the run (NodeFailed), and so does `should_stop()` (RunStopped) at the next node boundary (and at
    denoising steps, where the backend runs nodes in this process; while nodes run elsewhere, at once: they are
    cancelled). Whatever ends the run early carries `.results`."""
    results: dict[str, NodeResult] = {}
    cache = backend.cache
    owners = {task.key: node_id for node_id, task in plan.tasks.items()}
    pending = list(plan.order)
    running: dict[Any, str] = {}
    done: set[str] = set()
    record: dict = {}
    submitting = None  # the node a backend is computing in this thread (a local one, during `submit`)

    def damaged(key: str, reason: str) -> None:
        node = owners.get(key)
        if node is not None:
            events.node_warning(node, f"its cache entry was damaged ({reason}): moved to the cache's quarantine/ folder, "
                                      "the node runs again")

    def finish(node_id: str, completion: Completion) -> None:
        task = plan.tasks[node_id]
        if completion.status == "failed":
            results[node_id] = completion.result
            events.node_failed(node_id, completion.error)
            raise NodeFailed(node_id, task.type_name, completion.error) from completion.error
        if completion.status == "cached":
            events.node_cached(node_id)
        else:
            events.node_done(node_id, completion.result.seconds)
        results[node_id] = completion.result
        done.add(node_id)
        if after_node is None:
            return
        for attempt in range(len(task.upstream) + 2):
            try:
                after_node(task, completion.result)
                return
            except EntryMissing:  # an input entry was removed by another process: make it again
                if attempt > len(task.upstream) or not backend.restore_inputs(plan, task, events, should_stop):
                    raise

    cache.on_problem = damaged
    try:
        while pending or running:
            blocked = False
            for node_id in list(pending):
                reason = should_stop() if should_stop is not None else None
                if reason:
                    raise RunStopped(f"stopped before node '{node_id}'", reason)
                task = plan.tasks[node_id]
                if not all(owners[key] in done for key in task.upstream.values() if key in owners):
                    continue  # an input outside the plan (a worker's one-task plan) is read from the cache
                submitting = node_id
                submitted = backend.submit(plan, task, replace=no_cache or node_id in force, events=events,
                                           should_stop=should_stop, run=record)
                submitting = None
                if submitted is None:
                    blocked = True
                    continue
                pending.remove(node_id)
                if isinstance(submitted, Completion):
                    finish(node_id, submitted)
                else:
                    running[submitted] = node_id
            if not running:
                if pending and not blocked:
                    raise RuntimeError(f"nothing can run: {pending} wait on nodes that are not done")
                if blocked:
                    time.sleep(WAIT_S)
                continue
            reason = should_stop() if should_stop is not None else None
            if reason:  # while nodes run elsewhere: cancel them now, not once they end
                raise RunStopped(f"stopped while node '{', '.join(running.values())}' ran", reason)
            for handle, completion in backend.wait(running, WAIT_S):
                node_id = running.pop(handle)
                if completion.status == "retry":
                    pending.insert(0, node_id)
                else:
                    finish(node_id, completion)
    except BaseException as ended:
        if submitting is not None and submitting not in results:  # stopped inside the node
            results[submitting] = getattr(ended, "interrupted", None) or NodeResult("interrupted")
        if running:
            backend.cancel(running)
            for node_id in running.values():
                results.setdefault(node_id, NodeResult("interrupted"))
        ended.results = results  # type: ignore[attr-defined]
        raise
    finally:
        cache.on_problem = None
    return results


class LocalExecutor:
    """Runs tasks one after another in this process; long-lived (a Session keeps one), events per run."""

    name = "local"
    loads_here = True

    def __init__(self, cache: NodeCache, catalogue: Mapping[str, Any], resources: Resources):
        self.cache = cache
        self.catalogue = catalogue
        self.resources = resources

    # ---------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Nothing to join: it runs here."""

    def close(self) -> None:
        """Nothing to release: its models belong to the Session."""

    def capacity(self) -> int:
        return 1  # its pipelines are shared mutable objects: one run at a time

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def run(self, plan: Plan, events: Events, *, force: set[str] = frozenset(), no_cache: bool = False,
            after_node: Callable[[Task, NodeResult], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict[str, NodeResult]:
        return run_plan(self, plan, events, force=force, no_cache=no_cache, after_node=after_node,
                        should_stop=should_stop)

    # ------------------------------------------------------------ backend
    def submit(self, plan: Plan, task: Task, *, replace: bool, events: Events,
               should_stop: Callable[[], bool] | None, run: dict) -> Completion:
        """Compute the task now (in this process), holding its entry's lock unless it replaces an entry (--no-cache,
        --force): another process computing the same key meanwhile is waited for and its entry reused, never
        computed twice."""
        if not replace:
            found = cached(self.cache, task)
            if found is not None:
                return found
        if replace:
            return self._execute(plan, task, events, replace=True, should_stop=should_stop)
        with ExitStack() as held:  # a batch holds every member's lock (in key order: two batches never deadlock)
            for key in sorted({member["key"] for member in self._batch(task) if member["key"]} | {task.key}):
                held.enter_context(self.cache.acquire(key, _waiting(task.node_id, events, should_stop)))
            return cached(self.cache, task) or self._execute(plan, task, events, replace=False, should_stop=should_stop)

    def wait(self, running: dict[Any, str], timeout: float) -> list[tuple[Any, Completion]]:
        return []  # nothing runs elsewhere: every submit completes at once

    def cancel(self, running: dict[Any, str]) -> None:
        pass

    def restore_inputs(self, plan: Plan, task: Task, events: Events, should_stop: Callable[[], bool] | None,
                       depth: int = 0) -> bool:
        """Upstream entries removed since they were checked (another process's `cache clear`, a damaged file) are
        computed again before the node reads them."""
        for node_id, key in task.upstream.items():
            if self.cache.lookup(key) is None and node_id in plan.tasks and depth < len(plan.tasks):
                upstream = plan.tasks[node_id]
                with self.cache.acquire(key, _waiting(node_id, events, should_stop)):
                    if self.cache.lookup(key) is None:
                        events.node_warning(task.node_id, f"the cache entry of its input '{node_id}' was removed or "
                                                          "damaged meanwhile: computing it again")
                        self.restore_inputs(plan, upstream, events, should_stop, depth + 1)
                        completion = self._execute(plan, upstream, events, replace=False, should_stop=should_stop,
                                                   quiet=True)
                        if completion.status == "failed":
                            raise NodeFailed(node_id, upstream.type_name, completion.error) from completion.error
        return True

    def _batch(self, task: Task) -> list[dict]:
        """The members of the task's batch (itself included) where its node type computes batches, else none."""
        batching = getattr(self.catalogue[task.type_name], "batch", None)
        members = (task.batch or {}).get("members") or []
        return members if batching is not None and len(members) > 1 else []

    def fields(self, task: Task):
        """The node's validated fields, rebuilt from the task's plain data."""
        return self.catalogue[task.type_name].model.model_validate(decode_links(task.fields))

    def _execute(self, plan: Plan, task: Task, events: Events, *, replace: bool,
                 should_stop: Callable[[], bool] | None = None, quiet: bool = False) -> Completion:
        node_type = self.catalogue[task.type_name]
        context = NodeContext(task, self.cache, self.resources, events, should_stop)
        # a batch: one call computes every member (tasks of other runs of a sweep), each stored under its own key
        lead = task.batch["index"] if self._batch(task) else None
        members = [task if index == lead else batch_member(task, member)
                   for index, member in enumerate(self._batch(task))]
        contexts = [context if member is task else NodeContext(member, self.cache, self.resources, events, should_stop)
                    for member in members]
        if not quiet:
            events.node_started(task.node_id)
        started = time.perf_counter()
        retried, refetches = False, 0
        try:
            fields = self.fields(task)
            self.restore_inputs(plan, task, events, should_stop)
            while True:
                self.resources.node_started(task, context.phase)
                try:
                    if members:
                        for member_context in contexts:
                            member_context.info = {}
                        computed = node_type.batch.run(contexts, [self.fields(member) for member in members], lead)
                        outputs = computed[lead]
                    else:
                        outputs = node_type.run(context, fields)
                    break
                except EntryMissing:
                    # an input entry vanished under the node: compute it again, then the node. One `cache clear` may
                    # remove each input in turn while the node reads them, so each input may need this once
                    if refetches > len(task.upstream):
                        raise
                    refetches += 1
                    self.restore_inputs(plan, task, events, should_stop)
                except Exception as error:  # noqa: BLE001
                    if retried or not self.resources.retry_after(task, error):
                        raise
                    retried = True
                    context.warn(f"out of memory ({type(error).__name__}): released the other models and ran the node again")
            seconds = time.perf_counter() - started
            results = list(zip(members, contexts, computed)) if members else [(task, context, outputs)]
            for _member, _context, member_outputs in results:  # all checked before any is stored
                unknown = set(member_outputs) - set(node_type.outputs)
                if unknown:
                    raise RuntimeError(f"produced undeclared outputs {sorted(unknown)}")
            for member, member_context, member_outputs in results:
                if member.key is None:
                    continue  # computed for the batch's sake only (a reproduction rebuilding the recorded batch)
                stored = {name: (node_type.outputs[name], value) for name, value in member_outputs.items()}
                self.cache.put(member.key, stored, write_value, {
                    "node_id": member.node_id, "type": member.type_name, "version": node_type.version,
                    # a node that made only some outputs (a skipped decode: its latents) defaults to what it made
                    "default_output": node_type.default_output if node_type.default_output in stored else next(iter(stored), None),
                    "seconds": round(seconds, 4), "info": member_context.info,
                }, replace=replace and member is task)
        except (KeyboardInterrupt, RunStopped) as stopped:
            stopped.interrupted = NodeResult("interrupted", time.perf_counter() - started, context.info)  # type: ignore[attr-defined]
            raise
        except Exception as error:  # a node's failure is reported as data, not a crash
            import traceback

            failed = {**context.info, "error": f"{type(error).__name__}: {error}", "error_type": type(error).__name__}
            if fix_of(error):
                failed["fix"] = fix_of(error)
            # the traceback as text (plain data: it crosses to the run's process from a remote worker too); the run
            # writes it into a file beside the manifest (runner.records.manifest)
            failed[TRACEBACK_INFO] = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            return Completion("failed", NodeResult("failed", time.perf_counter() - started, failed), error)
        return Completion("ran", NodeResult("ran", seconds, context.info))
