"""Executors by name: what `Session(executor=NAME, executor_options={...})` and `runner run --executor NAME` build.

Each factory takes the Session's cache, its model resources, the memory budget and the executor's own options.
Adding an executor is one module implementing runner.executor.engine.Executor (a Backend for the one scheduling
loop, plus the lifecycle) and one line in EXECUTORS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..core.errors import CommandError, Location, Problem

if TYPE_CHECKING:  # imported by the factories when one is built: the command line's parser reads the names only
    from ..executor.cache import NodeCache
    from ..models.resources import PoolResources


def _local(cache: NodeCache, resources: PoolResources, budget: dict, options: dict) -> Any:
    from .wiring import local_executor

    return local_executor(cache, resources)


def _ray(cache: NodeCache, resources: PoolResources, budget: dict, options: dict) -> Any:
    from ..executor.ray import RayExecutor
    from .wiring import WORKER_ENGINE

    workers = options.get("workers")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise CommandError([Problem(Location("--workers"), (), f"--workers {workers}: at least 1 worker",
                                     "give --workers N with N >= 1, or leave it out")])
    return RayExecutor(cache, engine=WORKER_ENGINE, **options, **budget)


# name -> factory(cache, resources, budget {max_ram, max_vram}, options) -> Executor
EXECUTORS: dict[str, Callable[..., Any]] = {"local": _local, "ray": _ray}
# the options each takes (for the message naming them): the keyword parameters of the executor's constructor
OPTIONS = {"local": (), "ray": ("address", "workers", "cpus_per_worker", "gpus_per_worker", "max_retries", "shared")}


def build_executor(name: str, cache: NodeCache, resources: PoolResources, budget: dict, options: dict | None) -> Any:
    """The executor `name` with `options`; CommandError for an unknown name or option."""
    from ..core.suggest import did_you_mean

    factory = EXECUTORS.get(name)
    if factory is None:
        raise CommandError([Problem(Location("Session"), (), f"unknown executor {name!r}{did_you_mean(name, EXECUTORS)}",
                                     f"use one of: {', '.join(EXECUTORS)}")])
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS[name]))
    if unknown:
        takes = ", ".join(OPTIONS[name]) or "none"
        others = [other for other, names in OPTIONS.items() if set(unknown) <= set(names)]
        raise CommandError([Problem(Location("executor_options"), (), f"the {name} executor takes no option "
                                     f"{', '.join(repr(o) for o in unknown)} (on the command line: --ray-address, "
                                     "--workers, --cpus-per-worker)",
                                     f"its options: {takes}" + (f"; use executor {others[0]!r} for these" if others else ""))])
    return factory(cache, resources, budget, options)


__all__ = ["EXECUTORS", "build_executor"]
