"""The one place that wires an engine: a cache, a model pool within a memory budget, and the executor that runs
nodes over them. A Session builds its engine here, and so does each Ray worker (through `worker_engine`, which the
Ray executor imports by name: the executor layer itself knows neither models nor nodes)."""

from __future__ import annotations

from ..core.paths import models_dir
from ..executor.cache import NodeCache
from ..executor.engine import LocalExecutor
from ..models.pool import ModelPool
from ..models.resources import PoolResources
from ..nodes import NODE_TYPES

# what the Ray executor's workers import to build their engine (see executor/ray.py)
WORKER_ENGINE = "runner.engine.wiring:worker_engine"


def model_resources(cache: NodeCache, max_ram: int | None, max_vram: int | None) -> PoolResources:
    """A model pool for `cache` (tiny models are built beside it) and the resources view nodes reach it through."""
    pool = ModelPool(models_dir(cache.root), cache.hashes, max_ram=max_ram, max_vram=max_vram)
    return PoolResources(pool)


def local_executor(cache: NodeCache, resources: PoolResources) -> LocalExecutor:
    return LocalExecutor(cache, NODE_TYPES, resources)


class WorkerEngine:
    """A Ray worker's engine: the local executor over the worker's own model pool."""

    def __init__(self, cache: NodeCache, *, max_ram: int | None, max_vram: int | None):
        self.resources = model_resources(cache, max_ram, max_vram)
        self.executor = local_executor(cache, self.resources)

    def begin_run(self) -> None:
        self.resources.begin_run()

    def identities(self) -> list[str]:
        """The models this worker holds loaded (for the driver's model affinity)."""
        return [resident.identity for resident in self.resources.pool.residents.values()]


def worker_engine(cache: NodeCache, *, max_ram: int | None = None, max_vram: int | None = None) -> WorkerEngine:
    return WorkerEngine(cache, max_ram=max_ram, max_vram=max_vram)
