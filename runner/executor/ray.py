"""The Ray executor: a plan's tasks on a pool of warm Ray actors, each holding its own models (a Session's engine).

The driver (this process) plans, checks its cache, and writes run folders and manifests exactly as a local run does.
It sends each task that is not cached (plain data, `Task.to_data()`) to an idle worker as soon as the nodes it reads
are done, preferring a worker that already holds the task's models (model affinity), so independent branches run
side by side and a checkpoint loads once per worker, not once per task.

Results travel as content-addressed cache entries. When the workers see the driver's cache folder (shared storage:
the driver writes a probe file there and each worker looks for it), they read and write entries there directly;
otherwise the driver ships the entries a task reads with it and writes the entry a worker sends back into its own
cache, through Ray's object store.

Faults: a worker that dies mid-task is replaced and its task retried on another (at most `max_retries` times, each
recorded in the manifest); a node that raises fails the run as it does locally (no retry). Every wait on Ray has a
timeout: a cluster that cannot start the workers (a GPU request on a CPU-only cluster) is a clear error.
"""

from __future__ import annotations

import os
import secrets
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..core.errors import CommandError, Location, Problem, Refused
from .cache import NodeCache
from .engine import Completion, NodeFailed, NodeResult, RunStopped, cached, run_plan
from .plan import Plan, Task

WORKER_START_S = 300  # importing torch and diffusers in a fresh process on a slow machine, with margin
CONNECT_S = 10  # to reach a cluster's head before handing the address to Ray
RAY_HINT = ("start a cluster with 'ray start --head' (then --ray-address auto), give the head's address "
            "(ray://HOST:10001), or leave --ray-address out to start a local cluster for this command")
_FORWARDED_ENV = ("RUNNER_MODELS_DIR", "RUNNER_MAX_PIXELS", "RUNNER_MAX_INPUT_PIXELS", "RUNNER_MAX_INPUT_BYTES",
                  "HF_HOME", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")


class _WorkerEvents:
    """What a worker's run of one task reports back: its warnings (steps and phases are not streamed)."""

    def __init__(self):
        self.warnings: list[str] = []

    def node_cached(self, node_id): ...
    def node_started(self, node_id): ...
    def node_step(self, node_id, step, total): ...
    def node_phase(self, node_id, text): ...
    def node_done(self, node_id, seconds): ...
    def node_failed(self, node_id, error): ...

    def node_warning(self, node_id, message):
        self.warnings.append(message)


class Worker:
    """A Ray actor: one warm engine (cache view, model pool) running tasks one at a time."""

    def __init__(self, driver_cache: str, probe: str, token: str, engine: str, max_ram=None, max_vram=None,
                 shared: bool | None = None, threads: dict[str, str] | None = None):
        """`engine`: "module:function" building the worker's engine from its cache (the front's wiring, imported here
        by name: this layer knows neither models nor nodes)."""
        # Ray sets OMP_NUM_THREADS to the actor's CPUs; torch's CPU kernels give other last bits with another thread
        # count, so a worker uses the threads a local run would (the driver's settings, else torch's default)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.pop(name, None)
        os.environ.update(threads or {})
        import importlib

        try:
            sees = (Path(driver_cache) / probe).read_text() == token
        except OSError:
            sees = False
        self.shared = sees if shared is None else (shared and sees)
        root = Path(driver_cache) if self.shared else Path(tempfile.mkdtemp(prefix="runner-worker-cache-"))
        self.cache = NodeCache(root)
        module, function = engine.split(":")
        self.engine = getattr(importlib.import_module(module), function)(self.cache, max_ram=max_ram, max_vram=max_vram)
        self.executor = self.engine.executor
        self.name = f"{os.uname().nodename}:{os.getpid()}"

    def ready(self) -> dict:
        return {"name": self.name, "shared": self.shared}

    def run_task(self, task_data: dict, plan_data: dict, entries: dict[str, dict], replace: bool) -> dict:
        task = Task.from_data(task_data)
        for key, entry in entries.items():
            if not self.cache.has(key):
                self.cache.import_entry(key, entry["record"], entry["files"])
        plan = Plan(tasks={task.node_id: task}, order=[task.node_id], **plan_data)
        events = _WorkerEvents()
        self.engine.begin_run()
        loaded_before = set(self.pool_identities())
        started = time.perf_counter()
        import ray

        # ray.cancel only flags a running actor task: the node stops at its next denoising step (or node boundary)
        cancelled = getattr(ray.get_runtime_context(), "is_canceled", None)
        try:
            results = self.executor.run(plan, events, force={task.node_id} if replace else set(), no_cache=replace,
                                        should_stop=cancelled)
        except NodeFailed as failure:
            result = failure.results.get(task.node_id)  # type: ignore[attr-defined]
            return {"status": "failed", "error": str(failure), "info": result.info if result else {},
                    "seconds": time.perf_counter() - started, "warnings": events.warnings, "worker": self.name}
        except RunStopped:  # the driver cancelled it (its run stopped): nobody waits for this answer
            return {"status": "interrupted", "seconds": time.perf_counter() - started, "worker": self.name}
        result = results[task.node_id]
        payload = {"status": result.status, "info": result.info, "seconds": result.seconds, "warnings": events.warnings,
                   "worker": self.name, "loaded": sorted(set(self.pool_identities()) - loaded_before),
                   "models": sorted(self.pool_identities())}
        if not self.shared:
            record, files = self.cache.export_entry(task.key)
            payload["entry"] = {"record": record, "files": files}
            # a batch (one task) stored its other members' entries too: they go back with it
            others = {member["key"] for member in (task.batch or {}).get("members", [])} - {task.key, None}
            payload["batch_entries"] = {key: dict(zip(("record", "files"), self.cache.export_entry(key)))
                                        for key in sorted(others) if self.cache.has(key)}
        return payload

    def pool_identities(self) -> list[str]:
        return self.engine.identities()


class _signals_kept:
    """The process's SIGINT, SIGTERM and SIGHUP handlers as they were before (ray.init sets its own SIGTERM handler, a
    sys.exit that would end a run without its record); with `defer`, one of them that arrives meanwhile is delivered
    once the block ends. Main thread only (elsewhere Python cannot set handlers and delivers none)."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self, defer: bool):
        self.defer = defer
        self.caught: list[int] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self.NAMES:
            if hasattr(signal, name):
                number = getattr(signal, name)
                self.previous[number] = signal.getsignal(number)
                if self.defer and self.previous[number] not in (signal.SIG_IGN, None):
                    signal.signal(number, self._catch)
        return self

    def _catch(self, signum, frame) -> None:
        self.caught.append(signum)

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        if self.caught:
            signal.raise_signal(self.caught[0])  # the handler it had: a KeyboardInterrupt from here, as a Ctrl-C
        return False


def _kill(actor) -> None:
    import ray

    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001  (already gone)
        pass


class WorkerFailure(Refused):
    """A node failed on a worker: its error as the worker reported it, with the fix it gave."""


@dataclass(eq=False)
class _Running:
    """A task sent to a worker: what `wait` needs to collect it."""

    ref: Any
    index: int
    task: Task
    attempt: int
    replace: bool
    run: dict
    record: dict
    events: Any


class RayExecutor:
    """Runs plans on Ray actors (see the module docstring); long-lived like a Session, closed with `close()`."""

    name = "ray"
    loads_here = False  # each worker loads its models, within its own budget

    def __init__(self, cache: NodeCache, *, engine: str, address: str | None = None, workers: int | None = None,
                 cpus_per_worker: float = 1, gpus_per_worker: float | None = None, max_retries: int = 2,
                 max_ram: int | None = None, max_vram: int | None = None, shared: bool | None = None):
        """`engine`: "module:function" each worker imports to build its engine (runner.engine.wiring's
        worker_engine). `shared`: None finds out whether the workers see the cache folder; False ships entries
        through Ray's object store even where they could (what a cluster without shared storage does)."""
        self.cache = cache
        self.engine = engine
        self.shared_wanted = shared
        self.in_flight: dict[str, int] = {}  # node id -> index of the worker running it
        self.address = address
        self.workers_wanted = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.max_retries = max_retries
        self.budget = {"max_ram": max_ram, "max_vram": max_vram}
        self._local = threading.local()
        self.lock = threading.RLock()
        self.busy: set[int] = set()  # actor indexes running a task, across every run in progress
        self.computing: dict[str, int] = {}  # cache key -> the run (id of its results) computing it
        self.actors: list[Any] = []
        self.names: dict[int, str] = {}  # actor index -> worker name
        self.holds: dict[int, set[str]] = {}  # actor index -> model identities it holds
        self.started_ray = False
        self.shared = False

    # ---------------------------------------------------------------- start
    def start(self) -> None:
        """Join or start the cluster and start the workers (once; a CommandError when that cannot be done)."""
        with self.lock:
            self._start()

    def _start(self) -> None:
        if self.actors:
            return
        import ray

        if self.address and self.address != "auto":
            self._check_reachable(self.address)
        if not ray.is_initialized():
            # a local cluster's processes are known to Ray (and stopped by `close`) only once ray.init returns: a
            # Ctrl-C or SIGTERM meanwhile waits for that (a few seconds), then stops the command and the cluster
            with _signals_kept(defer=not self.address):
                try:
                    if self.address:
                        ray.init(address=self.address, log_to_driver=False, logging_level="ERROR")
                    else:
                        cpus = max(1, int((self.workers_wanted or 1) * self.cpus_per_worker + 0.999))
                        ray.init(num_cpus=max(cpus, os.cpu_count() or 1), log_to_driver=False, include_dashboard=False,
                                 logging_level="ERROR")
                        self.started_ray = True
                except Exception as exc:  # noqa: BLE001  (ConnectionError, RuntimeError, ... by Ray's version)
                    raise CommandError([Problem(Location("--ray-address"), (), f"cannot reach the Ray cluster at "
                                                 f"{self.address or 'a new local cluster'}: {type(exc).__name__}: {exc}",
                                                 RAY_HINT)]) from None
        resources = ray.cluster_resources()
        gpus = self.gpus_per_worker if self.gpus_per_worker is not None else (1 if resources.get("GPU", 0) >= 1 else 0)
        count = self.workers_wanted or (int(resources.get("GPU", 0)) if gpus else 1) or 1
        need_cpu, need_gpu = count * self.cpus_per_worker, count * gpus
        if need_gpu > resources.get("GPU", 0) or need_cpu > resources.get("CPU", 0):
            raise CommandError([Problem(Location("--workers"), (), (
                f"{count} workers of {self.cpus_per_worker:g} CPU{'' if self.cpus_per_worker == 1 else 's'}"
                + (f" and {gpus:g} GPU" if gpus else "") + f" need {need_cpu:g} CPUs" + (f" and {need_gpu:g} GPUs" if gpus else "")
                + f", but the cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs: "
                "they could never start"), "ask for fewer workers (--workers N, --cpus-per-worker N), or add nodes")])
        self.gpus = gpus
        self._probe()
        actors: list[Any] = []
        try:
            for _ in range(count):
                actors.append(self._new_actor())
            for index, actor in enumerate(actors):
                self._await_ready(index, actor)
        except BaseException:  # a Ctrl-C or a worker that cannot start: none of them is left running
            for actor in actors:
                _kill(actor)
            raise
        self.actors = actors

    @staticmethod
    def _check_reachable(address: str) -> None:
        """A head that does not answer is an error at once (Ray itself retries the connection for minutes)."""
        import socket
        from urllib.parse import urlsplit

        parts = urlsplit(address if "://" in address else f"gcs://{address}")
        try:
            host, port = parts.hostname, parts.port or (10001 if parts.scheme == "ray" else 6379)
        except ValueError:
            host, port = None, None
        if not host:
            raise CommandError([Problem(Location("--ray-address"), (), f"'{address}' is not a Ray address",
                                         "write auto, HOST:6379 or ray://HOST:10001")])
        try:
            socket.create_connection((host, port), timeout=CONNECT_S).close()
        except OSError as exc:
            raise CommandError([Problem(Location("--ray-address"), (), f"cannot reach the Ray cluster at {address} "
                                         f"({host}:{port}: {exc.strerror or exc})", RAY_HINT)]) from None

    def _probe(self) -> None:
        self.cache.root.mkdir(parents=True, exist_ok=True)
        self.probe_name, self.token = f".ray-probe-{secrets.token_hex(6)}", secrets.token_hex(16)
        (self.cache.root / self.probe_name).write_text(self.token)

    def _new_actor(self):
        import ray

        env = {name: os.environ[name] for name in _FORWARDED_ENV if name in os.environ}
        remote = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus, max_restarts=0,
                            runtime_env={"env_vars": env} if env else None)(Worker)
        threads = {name: os.environ[name] for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if name in os.environ}
        return remote.remote(str(self.cache.root.resolve()), self.probe_name, self.token, self.engine,
                             shared=self.shared_wanted, threads=threads, **self.budget)

    def _await_ready(self, index: int, actor) -> None:
        import ray

        try:
            info = ray.get(actor.ready.remote(), timeout=WORKER_START_S)
        except ray.exceptions.GetTimeoutError:
            raise CommandError([Problem(Location("--executor ray"), (), f"the Ray workers did not start within "
                                         f"{WORKER_START_S} s (cluster resources: {ray.cluster_resources()})",
                                         "check 'ray status' for pending actors; ask for fewer or smaller workers")]) from None
        self.names[index] = info["name"]
        self.holds[index] = set()
        self.shared = info["shared"]

    def capacity(self) -> int:
        """How many runs (a sweep's variants) are worth running at once: one per worker (the workers start now)."""
        self.start()
        return len(self.actors)

    # ------------------------------------------------------------------ run
    # Several runs may share the workers at once (a sweep's variants, each in its own thread): the workers' busy set
    # and the keys being computed are shared under `self.lock`; each run's record is its own (the loop's `run` dict,
    # which describe() reads in the run's thread).
    def run(self, plan: Plan, events, *, force: set[str] = frozenset(), no_cache: bool = False,
            after_node: Callable[[Task, NodeResult], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict[str, NodeResult]:
        self.start()
        self._local.record = None
        return run_plan(self, plan, events, force=force, no_cache=no_cache, after_node=after_node,
                        should_stop=should_stop)

    def submit(self, plan: Plan, task: Task, *, replace: bool, events, should_stop, run: dict):
        """Send the task to an idle worker (one holding its models, if any is idle); None while none is, or while
        another run computes the same key (then it is read from the cache once that run has stored it)."""
        record = run.setdefault("ray", {"workers": {}, "retries": [], "loads": {}, "attempts": {}})
        self._local.record = record
        with self.lock:
            if not replace and self.computing.get(task.key, id(run)) != id(run):
                return None
            found = None if replace else cached(self.cache, task)
            if found is not None:
                return found
            index = self._pick(task, self.busy)
            if index is None:
                return None
            self.busy.add(index)
            self.computing[task.key] = id(run)
        attempt = record["attempts"].get(task.node_id, 0)
        try:
            entries = {} if self.shared else {key: self._export(key) for key in task.upstream.values()}
            if attempt == 0:
                events.node_started(task.node_id)
            plan_data = {"workflow_seed": plan.workflow_seed, "device": plan.device, "dtype": plan.dtype,
                         "libraries": plan.libraries, "seeds": plan.seeds, "deterministic": plan.deterministic,
                         "allow_private_urls": plan.allow_private_urls}
            ref = self.actors[index].run_task.remote(task.to_data(), plan_data, entries, replace)
        except BaseException:
            self._release(index, task.key, run)
            raise
        self.in_flight[task.node_id] = index
        return _Running(ref, index, task, attempt, replace, run, record, events)

    def wait(self, running: dict, timeout: float) -> list:
        import ray

        handles = {handle.ref: handle for handle in running}
        ready, _ = ray.wait(list(handles), num_returns=1, timeout=timeout)
        return [(handles[ref], self._collect(handles[ref])) for ref in ready]

    def _collect(self, handle: "_Running") -> Completion:
        import ray

        task, node_id, record = handle.task, handle.task.node_id, handle.record
        self.in_flight.pop(node_id, None)
        try:
            try:
                payload = ray.get(handle.ref, timeout=60)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError) as exc:
                try:
                    self._replace(handle.index)
                except Exception as failed:  # noqa: BLE001  (the new worker died or timed out while it started)
                    reason = (str(failed).strip().splitlines() or [""])[0][:300]
                    error = WorkerFailure(f"its worker died ({type(exc).__name__}) and the worker started in its place "
                                          f"did not start ({type(failed).__name__}: {reason})",
                                          "run it again (finished nodes stay cached); 'ray status' shows the cluster's "
                                          "health and pending workers")
                    return Completion("failed", NodeResult("failed", info={"error": str(error)}), error)
                if handle.attempt >= self.max_retries:
                    error = RuntimeError(f"its worker died {handle.attempt + 1} times ({type(exc).__name__})")
                    return Completion("failed", NodeResult("failed", info={"error": str(error)}), error)
                record["attempts"][node_id] = handle.attempt + 1
                record["retries"].append({"node": node_id, "worker": self.names.get(handle.index, "?"),
                                          "error": type(exc).__name__, "attempt": handle.attempt + 1})
                handle.events.node_warning(node_id, f"its worker died ({type(exc).__name__}): running it again on another")
                return Completion("retry", NodeResult("interrupted"))
            record["workers"][node_id] = payload["worker"]
            if payload.get("loaded"):
                record["loads"][node_id] = payload["loaded"]
            for message in payload.get("warnings", []):
                handle.events.node_warning(node_id, message)
            if payload["status"] == "failed":
                error = WorkerFailure(payload["error"], payload.get("info", {}).get("fix", ""))
                return Completion("failed", NodeResult("failed", payload["seconds"], payload.get("info", {})), error)
            self.holds[handle.index] = set(payload.get("models", []))
            if "entry" in payload:
                self.cache.import_entry(task.key, payload["entry"]["record"], payload["entry"]["files"],
                                        replace=handle.replace)
            for key, entry in payload.get("batch_entries", {}).items():
                if not self.cache.has(key):
                    self.cache.import_entry(key, entry["record"], entry["files"])
        finally:
            self._release(handle.index, task.key, handle.run)  # after the entry is in the cache: a waiting run finds it
        status = "ran" if payload["status"] == "ran" else "cached"
        return Completion(status, NodeResult(status, payload["seconds"], payload.get("info", {})))

    def cancel(self, running: dict) -> None:
        import ray

        for handle in running:
            ray.cancel(handle.ref, force=False)
            self.in_flight.pop(handle.task.node_id, None)
            self._release(handle.index, handle.task.key, handle.run)

    def restore_inputs(self, plan: Plan, task: Task, events, should_stop) -> bool:
        return False  # an input entry removed under the driver fails the run (the workers computed it elsewhere)

    def _release(self, index: int, key: str, run: dict) -> None:
        with self.lock:
            self.busy.discard(index)
            if self.computing.get(key) == id(run):
                del self.computing[key]

    def _pick(self, task: Task, busy: set[int]) -> int | None:
        """An idle worker, preferring one that holds the task's models."""
        idle = [index for index in range(len(self.actors)) if index not in busy]
        if not idle:
            return None
        wanted = set(task.model_ids.values())
        return max(idle, key=lambda index: (len(wanted & self.holds.get(index, set())), -index))

    def _export(self, key: str) -> dict:
        record, files = self.cache.export_entry(key)
        return {"record": record, "files": files}

    def _replace(self, index: int) -> None:
        _kill(self.actors[index])
        self.actors[index] = self._new_actor()
        self._await_ready(index, self.actors[index])

    # -------------------------------------------------------------- record
    def describe(self) -> dict[str, Any]:
        """The manifest's executor record of the run this thread ran last: the cluster, and for each node the worker
        that ran it, the retries and the models each task loaded."""
        import ray

        record = getattr(self._local, "record", None) or {"workers": {}, "retries": [], "loads": {}}
        return {"name": "ray", "ray_version": ray.__version__, "address": self.address or "local",
                "workers": len(self.actors), "shared_cache": self.shared, "nodes": dict(record["workers"]),
                "retries": list(record["retries"]), "loads": dict(record["loads"])}

    def close(self) -> None:
        if not self.actors and not self.started_ray:
            return
        import ray

        for actor in self.actors:
            _kill(actor)
        self.actors = []
        if getattr(self, "probe_name", None):
            try:
                (self.cache.root / self.probe_name).unlink(missing_ok=True)
            except OSError:
                pass
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False
