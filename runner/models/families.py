"""Which model family a checkpoint belongs to, from its files (no torch)."""

from __future__ import annotations


def model_family(registry, source) -> str:
    """'kandinsky22' for Kandinsky 2.2 checkpoints (prior + decoder), else 'diffusers' (SD, SD2, SDXL, ...)."""
    folder = registry.model_folder(source)
    if folder is not None and folder.is_dir():
        if (folder / "prior").is_dir() and (folder / "decoder").is_dir():
            return "kandinsky22"
        index = folder / "model_index.json"
        if index.is_file() and '"KandinskyV22' in index.read_text():
            return "kandinsky22"
    elif "kandinsky-2-2" in source.location:
        return "kandinsky22"
    return "diffusers"


FAMILY_NAMES = {"diffusers": "SD 1.x/2.x, SDXL and other AutoPipeline checkpoints", "kandinsky22": "Kandinsky 2.2"}
