"""Model folders: where bare model names (`model: dreamshaper_8.safetensors`) are looked for.

The user names them with `--model-path DIR` (repeatable) and `RUNNER_MODEL_PATHS` (os.pathsep-separated; read by
runner.engine.model_paths, which makes the roots). Each is either a folder, searched in ComfyUI's layout (`checkpoints/`, `diffusers/`, `controlnet/`, `loras/`, `vae/`,
`upscale_models/`, ...) and then flat, or a ComfyUI `extra_model_paths.yaml`, whose groups say which folders hold
which kind (`base_path` plus `checkpoints: models/checkpoints`, one or several paths a line). Names are found by
path only: identity comes from the files' content (runner.models.sources), so it does not depend on the folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# The ComfyUI folder names (folder_paths.py) that hold each kind of model runner loads, searched in this order.
# `diffusers` is ComfyUI's folder for diffusers-format pipeline folders; `t2i_adapter` shares controlnet's loader.
KIND_FOLDERS: dict[str, tuple[str, ...]] = {
    # diffusion_models/ and unet/ hold a denoiser alone (a FLUX.1 transformer): it serves as a checkpoint's source,
    # with its text encoders and VAE named on the entry
    "pipeline": ("checkpoints", "diffusers", "diffusion_models", "unet"),
    "text_encoder": ("text_encoders", "clip"),
    "upscaler": ("upscale_models", "checkpoints", "diffusers"),
    "controlnet": ("controlnet", "t2i_adapter"),
    "lora": ("loras",),
    "embedding": ("embeddings",),
    "vae": ("vae",),
    "adapter": ("t2i_adapter", "controlnet"),
    "ip_adapter": ("ipadapter",),  # ComfyUI_IPAdapter_plus's folder
    "image_encoder": ("clip_vision",),
}
LISTED_FOLDERS = ("checkpoints", "diffusers", "controlnet", "t2i_adapter", "loras", "vae", "upscale_models",
                  "diffusion_models", "unet", "text_encoders", "clip", "embeddings", "ipadapter", "clip_vision")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")


@dataclass(frozen=True)
class ModelRoot:
    """One entry of the model paths: a folder (ComfyUI layout, then flat) or the groups of an extra_model_paths.yaml."""

    given: str  # the folder or YAML file, resolved (what manifests record)
    folders: dict[str, tuple[Path, ...]] = field(default_factory=dict)  # ComfyUI folder name -> folders
    flat: tuple[Path, ...] = ()  # searched for every kind, after the kind's own folders

    def search_folders(self, kind: str) -> list[Path]:
        """The kind's own folders, then the flat ones, then the other kinds' folders (a model found there is still
        used, so that its files can say what it is: "this is a ControlNet, put it under controlnet:")."""
        own = KIND_FOLDERS.get(kind, ())
        found = [folder for name in own for folder in self.folders.get(name, ())] + list(self.flat)
        return found + [folder for name, folders in self.folders.items() if name not in own for folder in folders]


def folder_root(folder: Path, given: str) -> ModelRoot:
    return ModelRoot(given, {name: (folder / name,) for name in LISTED_FOLDERS}, (folder,))


def looks_local(source: str) -> bool:
    """A source the model folders may hold: not tiny:, not absolute, not explicitly relative (./, ../)."""
    return not (source.startswith(("tiny:", "/", "./", "../", "~")) or os.path.isabs(source))


def find_model(name: str, kind: str, roots) -> tuple[Path | None, list[Path]]:
    """(the file or folder `name` is in the model folders, or None; the folders looked in, in order)."""
    looked = []
    for root in roots:
        for folder in root.search_folders(kind):
            if folder in looked:
                continue
            looked.append(folder)
            candidate = folder / name
            try:
                there = candidate.exists()
            except OSError:  # a name the file system cannot hold (too long): not there
                there = False
            if there:
                return candidate.resolve(), looked
    return None, looked


# ------------------------------------------------------------ runner models list
@dataclass(frozen=True)
class FoundModel:
    folder_kind: str  # ComfyUI folder name, or "other" (flat)
    name: str  # as a workflow would write it
    path: Path
    size: int


def list_models(roots) -> list[FoundModel]:
    """Every model file (by weight suffix) and model folder (holding model_index.json or config.json) in the roots'
    kind folders, one level deep (plus subfolders of files, as ComfyUI lists `SD1.5/model.safetensors`), and the flat
    folders' own files and model folders."""
    found, seen = [], set()

    def add(kind: str, base: Path, item: Path) -> None:
        real = item.resolve()
        if real in seen:
            return
        seen.add(real)
        found.append(FoundModel(kind, item.relative_to(base).as_posix(), item, _size(item)))

    for root in roots:
        for kind, folders in root.folders.items():
            for folder in folders:
                for item in _model_items(folder):
                    add(kind, folder, item)
        for folder in root.flat:
            for item in _model_items(folder, nested=False):
                add("other", folder, item)
    return found


def _model_items(folder: Path, nested: bool = True) -> list[Path]:
    if not folder.is_dir():
        return []
    items = []
    for item in sorted(folder.iterdir()):
        if not nested and item.name in LISTED_FOLDERS:
            continue  # a flat folder's kind folders are listed as such
        if item.is_file() and item.suffix.lower() in WEIGHT_SUFFIXES:
            items.append(item)
        elif item.is_dir() and _is_model_folder(item):
            items.append(item)
        elif item.is_dir() and nested and item.name not in LISTED_FOLDERS:
            items.extend(sub for sub in sorted(item.iterdir())
                         if (sub.is_file() and sub.suffix.lower() in WEIGHT_SUFFIXES) or (sub.is_dir() and _is_model_folder(sub)))
    return items


def _is_model_folder(folder: Path) -> bool:
    return (folder / "model_index.json").is_file() or (folder / "config.json").is_file() or any(
        sub.is_dir() and (sub / "model_index.json").is_file() for sub in folder.iterdir())


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
