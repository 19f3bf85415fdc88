"""Model families: each is one module behind one small declaration (base.Family); the generic code asks them.

`detect` tells a checkpoint's family from its files before anything loads (the pipeline class its model_index.json
names: tiny models, local folders, cached hub snapshots; a hub id's hints when nothing is cached); once a checkpoint
is loaded, `of_pipeline` tells it from the pipeline's class. Nothing outside this package names a family.
"""

from __future__ import annotations

from pathlib import Path

from .auto import FAMILY as AUTO
from .base import Family, Task
from .flux import FAMILY as FLUX
from .kandinsky21 import FAMILY as KANDINSKY21
from .kandinsky22 import FAMILY as KANDINSKY22
from .kandinsky3 import FAMILY as KANDINSKY3
from .sd import FAMILY as SD
from .sd3 import FAMILY as SD3
from .sdxl import FAMILY as SDXL

# the families runner knows (AUTO: any other AutoPipeline checkpoint)
FAMILIES: tuple[Family, ...] = (SD, SDXL, SD3, FLUX, KANDINSKY21, KANDINSKY22, KANDINSKY3)


def of_class(class_name: str | None) -> Family | None:
    """The family whose checkpoints name this pipeline class (None: none of runner's)."""
    return next((family for family in FAMILIES if class_name in family.classes), None)


def of_pipeline(pipe) -> Family:
    """The family of a loaded pipeline (AUTO for any other AutoPipeline checkpoint)."""
    return of_class(type(pipe).__name__) or AUTO


def of_keys(keys) -> Family | None:
    """The family whose single-file checkpoints have these tensor names (None: none of runner's)."""
    keys = list(keys)
    return next((family for family in FAMILIES if family.reads_keys(keys)), None)


def from_files(source) -> Family | None:
    """The family of a checkpoint from its files, without loading anything (no torch): the pipeline class its
    model_index.json names (tiny models, local folders, cached hub snapshots), or a single .safetensors file's tensor
    names; None when they do not say."""
    from ..signatures import checkpoint_class

    found = of_class(checkpoint_class(source))
    if found is None and source.kind == "file":
        from ..weights_file import safetensors_header

        path = Path(source.location)
        header = safetensors_header(path) if path.suffix.lower() == ".safetensors" and path.is_file() else None
        found = of_keys(key for key in header if key != "__metadata__") if isinstance(header, dict) else None
    return found


def detect(source) -> Family | None:
    """The family of a checkpoint from its files, without loading it (no torch); None when that cannot be known
    before loading (a pickle single file, a hub model not in the local cache whose id says nothing)."""
    found = from_files(source)
    if found is not None or source.kind != "hub":
        return found
    location = source.location.lower()
    return next((family for family in FAMILIES if any(hint in location for hint in family.hub_hints)), None)


def either(names) -> str:
    """Names as words say them: "A", "A or B", "A, B or C"."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1] if names else ""


def for_task(task: str) -> list[Family]:
    """The families that do a generation task (their names, for messages)."""
    return [family for family in FAMILIES if task in family.tasks]


def scheduler_names(task: str) -> set[str]:
    """The scheduler short names some family doing a task runs with (any other AutoPipeline checkpoint's: runner's
    usual set): what a node type of that task offers, so an editor completing from the schema never completes into a
    name every family running the node refuses."""
    from ..schedulers import SCHEDULER_CLASSES

    doing = for_task(task) + ([AUTO] if task in AUTO.tasks else [])
    return {name for family in doing for name in (family.schedulers or SCHEDULER_CLASSES)}


__all__ = ["AUTO", "FAMILIES", "Family", "Task", "detect", "either", "for_task", "from_files", "of_keys", "of_class",
           "of_pipeline", "scheduler_names"]
