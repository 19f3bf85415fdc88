"""The model pool: every model a process has loaded, shared by all the runs of a Session, within a memory budget.

A *resident* is one model loaded from disk (a checkpoint, a ControlNet, a depth or pose model) on one device
and dtype, with everything derived from it (the txt2img / img2img / inpaint pipelines `from_pipe` makes of a
checkpoint share its modules). Its size is measured when it lands (parameters and buffers, each storage
counted once, so modules shared between checkpoints are not counted twice).

Before a load would take the residents on one memory (RAM for the CPU, VRAM for CUDA) over the budget,
the least recently used residents are released; those the running node uses are never released. A model
that alone exceeds the budget is refused with the numbers. Sizes before loading are estimated from the
safetensors headers (element counts x the dtype's width), without importing torch.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.sizes import format_size, parse_size
from .sources import ModelUnavailable
from .weights_file import safetensors_header

RAM_RESERVE = 2 << 30  # left to the rest of the process and the system when the budget is not given
VRAM_RESERVE = 1 << 30  # activations, the VAE decode and the CUDA context
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
_SAFETENSORS_WIDTH = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                      "F8_E4M3": 1, "F8_E5M2": 1}


class BudgetExceeded(ModelUnavailable):
    """A model does not fit the memory budget even with every other model released."""


def available_ram() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_bytes(folder: Path | None, dtype: str, variant: str | None = None) -> int | None:
    """Bytes a model's weights take once loaded in `dtype`, from its safetensors headers; None when unknown."""
    if folder is None or not folder.exists():
        return None
    files = [folder] if folder.is_file() else sorted(folder.rglob("*.safetensors"))
    chosen: dict[tuple[str, str], Path] = {}
    for file in files:  # one file per weight set: the requested variant (model.fp16.safetensors) or the plain one
        parts = file.name.split(".")
        has_variant = len(parts) > 2
        stem = parts[0]
        if variant and has_variant and parts[-2] == variant:
            chosen[(str(file.parent), stem)] = file
        elif not has_variant:
            chosen.setdefault((str(file.parent), stem), file)
    if not chosen:
        return None
    width = DTYPE_BYTES.get(dtype, 4)
    total = 0
    for file in chosen.values():
        header = safetensors_header(file)
        if header is None:
            return None
        for name, info in header.items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            count = 1
            for side in info.get("shape", []):
                count *= int(side)
            floating = str(info.get("dtype", "")).startswith(("F", "BF"))
            total += count * (width if floating else _SAFETENSORS_WIDTH.get(info.get("dtype"), 4))
    return total


def measure_bytes(obj: Any, seen: set[int]) -> int:
    """Bytes of the parameters and buffers of every torch module inside `obj` whose storage is not in `seen` yet."""
    total = 0
    for module in _modules(obj):
        for tensor in list(module.parameters()) + list(module.buffers()):
            try:
                storage = tensor.untyped_storage()
                pointer = storage.data_ptr()
                size = storage.nbytes()
            except (RuntimeError, NotImplementedError):  # meta tensors (offloaded weights)
                continue
            if pointer and pointer not in seen:
                seen.add(pointer)
                total += size
    return total


def _modules(obj: Any) -> list:
    import torch

    found: list = []

    def visit(value: Any, depth: int) -> None:
        if depth > 3 or value is None:
            return
        if isinstance(value, torch.nn.Module):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item, depth + 1)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item, depth + 1)
        elif hasattr(value, "components") and isinstance(getattr(value, "components", None), dict):
            visit(value.components, depth + 1)  # a diffusers pipeline
        elif isinstance(getattr(value, "model", None), torch.nn.Module):
            found.append(value.model)  # a transformers pipeline

    visit(obj, 0)
    return found


@dataclass
class Resident:
    """One model loaded from disk, and what is derived from it."""

    identity: str
    device: str
    dtype: str
    label: str
    size: int = 0
    last_used: float = field(default_factory=time.monotonic)
    run: int = 0  # the run that loaded it
    pointers: set[int] = field(default_factory=set)

    @property
    def memory(self) -> str:
        return "vram" if self.device.startswith("cuda") else "ram"


class ModelPool:
    """Loaded models of one process (one Session), keyed by device, dtype and identity, within the memory budget."""

    def __init__(self, models_dir: Path, hash_cache=None, max_ram: int | None = None, max_vram: int | None = None):
        self.models_dir = Path(models_dir)
        self.hash_cache = hash_cache
        self.max_ram = max_ram if max_ram is not None else _default_ram_budget()
        self._max_vram = max_vram
        self.residents: dict[tuple[str, str, str], Resident] = {}  # (device, dtype, identity) -> resident
        self.objects: dict[tuple, tuple[Any, tuple]] = {}  # key -> (object, the residents it depends on)
        self.components_by_digest: dict[tuple[str, str, str], Any] = {}  # (device, dtype, digest) -> module
        self.shared_components: dict[str, list[str]] = {}  # identity -> components reused from another checkpoint
        self.peak: dict[str, int] = {"ram": 0, "vram": 0}
        self.runs = 0
        self._counted: dict[str, set[int]] = {"ram": set(), "vram": set()}

    # ------------------------------------------------------------- budget
    def budget(self, memory: str) -> int | None:
        if memory == "ram":
            return self.max_ram
        if self._max_vram is None:
            self._max_vram = _default_vram_budget()
        return self._max_vram

    def known_budget(self, memory: str) -> int | None:
        """The budget as far as it is known without importing torch (the default VRAM budget needs it)."""
        if memory == "vram" and self._max_vram is None and "torch" not in sys.modules:
            return None
        return self.budget(memory)

    def resident_bytes(self, memory: str) -> int:
        return sum(r.size for r in self.residents.values() if r.memory == memory)

    def admit(self, key: tuple[str, str, str], value: Any, label: str, run: int) -> Resident:
        """Account a model just loaded from disk (`key`: device, dtype, identity): its storage not counted yet."""
        device, dtype, identity = key
        resident = Resident(identity, device, dtype, label, run=run)
        seen = self._counted[resident.memory]
        before = set(seen)
        resident.size = measure_bytes(value, seen)
        resident.pointers = seen - before
        self.residents[key] = resident
        self.peak[resident.memory] = max(self.peak[resident.memory], self.resident_bytes(resident.memory))
        return resident

    def release(self, key: tuple[str, str, str], collect: bool = True) -> Resident:
        """Drop a resident and everything derived from it (the memory is freed once nothing else holds it)."""
        resident = self.residents.pop(key)
        for object_key in [k for k, (_obj, groups) in self.objects.items() if key in groups]:
            del self.objects[object_key]
        for digest_key in [k for k, module in self.components_by_digest.items()
                           if k[:2] == key[:2] and not self._held(module)]:
            del self.components_by_digest[digest_key]
        self._counted[resident.memory] -= resident.pointers
        if collect:
            self.collect(resident.memory)
        return resident

    @staticmethod
    def collect(memory: str) -> None:
        gc.collect()
        if memory == "vram":
            import torch

            torch.cuda.empty_cache()

    def _held(self, module: Any) -> bool:
        return any(module is other or module in getattr(other, "components", {}).values()
                   for other, _groups in self.objects.values())

    def make_room(self, memory: str, needed: int, keep: set, released: list[dict], label: str) -> None:
        """Release least recently used residents (never those in `keep`) until `needed` more bytes fit the budget."""
        budget = self.budget(memory)
        if budget is None:
            return
        if needed > budget:
            raise BudgetExceeded(
                f"model '{label}' needs about {format_size(needed)} of {memory.upper()}, more than the budget of "
                f"{format_size(budget)}: raise --max-{memory} (Session(max_{memory}=...)), or use a smaller dtype or model"
            )
        while self.resident_bytes(memory) + needed > budget:
            candidates = [(r.last_used, key) for key, r in self.residents.items() if r.memory == memory and key not in keep]
            if not candidates:
                return  # the running node's own models: they must stay, whatever the budget says
            _used, key = min(candidates)
            resident = self.release(key)
            released.append({"model": resident.label, "identity": resident.identity, "bytes": resident.size,
                             "device": resident.device, "reason": f"to make room for {label} within the {memory} budget "
                                                                   f"of {format_size(budget)}"})


def _default_ram_budget() -> int | None:
    available = available_ram()
    return None if available is None else max(available - RAM_RESERVE, available // 2)


def _default_vram_budget() -> int | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        free, _total = torch.cuda.mem_get_info()
        return max(free - VRAM_RESERVE, free // 2)
    except Exception:  # noqa: BLE001  (no CUDA, or a driver that cannot say)
        return None


__all__ = ["BudgetExceeded", "ModelPool", "Resident", "estimate_bytes", "format_size", "measure_bytes", "parse_size"]
