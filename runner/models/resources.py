"""The models side of the executor's resources: one run's registry views onto a long-lived pool."""

from __future__ import annotations

import sys
from typing import Any, Callable

from .pool import ModelPool, format_size
from .sources import ModelSource


def _silent(text: str) -> None:
    pass


class PoolResources:
    """Implements the executor's Resources protocol for a Session: the pool lives as long as the Session,
    each run gets fresh views (one per device/dtype) that record what it loaded, reused and released."""

    def __init__(self, pool: ModelPool):
        self.pool = pool
        self.views: dict[tuple, Any] = {}
        self.oom_released: list[dict] = []
        self.run = 0
        self.phase: Callable[[str], None] = _silent  # the running node's phase reporter

    def begin_run(self) -> None:
        self.pool.runs += 1
        self.run = self.pool.runs
        self.views = {}
        self.oom_released = []

    # ---------------------------------------------------------- Resources
    def models(self, task):
        key = (task.device, task.dtype, task.deterministic)
        if key not in self.views:
            if "diffusers" not in sys.modules:  # the first model of the process: these imports take seconds
                self.phase("importing torch, diffusers and transformers (once per process)")
            from .registry import ModelRegistry

            view = ModelRegistry(self.pool, task.device, task.dtype, task.deterministic, self.run)
            view.node_started(self.phase)
            self.views[key] = view
        return self.views[key]

    def source(self, data: dict) -> ModelSource:
        return ModelSource.from_data(data)

    def node_started(self, task, phase: Callable[[str], None] = None) -> None:
        self.phase = phase or _silent
        for view in self.views.values():
            view.node_started(self.phase)

    def retry_after(self, task, error: BaseException) -> bool:
        """A CUDA out-of-memory error: release every GPU model the node does not use, and let it run once more."""
        if "torch" not in sys.modules:
            return False
        import torch

        if not isinstance(error, torch.cuda.OutOfMemoryError):
            return False
        in_use = set().union(*(view.in_use for view in self.views.values()))
        released = 0
        for key, resident in list(self.pool.residents.items()):
            if resident.memory == "vram" and key not in in_use:
                self.pool.release(key)
                self.oom_released.append({"model": resident.label, "identity": resident.identity, "bytes": resident.size,
                                          "device": resident.device, "reason": f"CUDA out of memory in node '{task.node_id}'"})
                released += 1
        return released > 0

    # ------------------------------------------------------------ records
    def _gather(self, name: str) -> list:
        return [item for view in self.views.values() for item in getattr(view, name)]

    @property
    def loads(self) -> list[str]:
        return self._gather("loads")

    @property
    def reused(self) -> list[str]:
        return self._gather("reused")

    @property
    def released(self) -> list[dict]:
        return self._gather("released") + self.oom_released

    @property
    def environment(self) -> dict:
        """Device and determinism facts, known once a model was loaded (a fully cached run loads none)."""
        for view in self.views.values():
            return view.environment()
        return {}

    def budget_problems(self, needs: list[tuple[str, str, Any, str, str]]) -> list[tuple[str, str]]:
        """(node id, message) for each model that alone exceeds the budget of the memory it would load into.

        `needs`: (node id, model label, source, dtype, device) of the models the nodes that will run use."""
        from .pool import estimate_bytes
        from .registry import model_folder

        problems = []
        for node_id, label, source, dtype, device in needs:
            memory = "vram" if device.startswith("cuda") else "ram"
            budget = self.pool.known_budget(memory)
            if budget is None:
                continue
            needed = estimate_bytes(model_folder(source, self.pool.models_dir), dtype, source.entry.variant)
            if needed is not None and needed > budget:
                problems.append((node_id, f"model '{label}' needs about {format_size(needed)} of {memory.upper()} in "
                                          f"{dtype}, more than the memory budget of {format_size(budget)}"))
        return problems

    def work_problems(self, works: list[tuple[str, Any, Any, list, str, str]]) -> list[tuple[str, tuple, str, str]]:
        """(node id, field, message, fix) for each generation call whose working memory (models.estimate's formula:
        the VAE decode, latents and output images of its size and batch) cannot fit the budget beside the node's own
        models, found before anything loads.

        `works`: (node id, PlannedCall, checkpoint source, sources of the node's models, dtype, device)."""
        from .estimate import planned_work
        from .pool import estimate_bytes
        from .sources import local_folder

        problems = []
        for node_id, call, checkpoint, sources, dtype, device in works:
            memory = "vram" if device.startswith("cuda") else "ram"
            budget = self.pool.known_budget(memory)
            if budget is None:
                continue
            need, how = planned_work(call, checkpoint, self.pool.models_dir, dtype)
            own = 0
            for source in sources:  # the models it loads (a tiny one not built yet: a few MB, not counted)
                folder = local_folder(source, self.pool.models_dir)
                own += (estimate_bytes(folder, dtype, source.entry.variant) or 0) if folder is not None else 0
            if need + own <= budget:
                continue
            fixes = ["make fewer or smaller images (num_images, width, height)"]
            if not call.tiled:
                fixes.append("decode in tiles (vae_tiling: true)")
            fixes.append(f"raise the budget (--max-{memory}, Session(max_{memory}=...))")
            message = (f"this call needs about {format_size(need)} of {memory.upper()} for its work ({how}) besides "
                       f"{format_size(own)} of models, more than the {memory} budget of {format_size(budget)}")
            problems.append((node_id, call.at, message, ", or ".join(fixes)))
        return problems
