"""Model folders: where bare model names (`model: dreamshaper_8.safetensors`) are looked for.

The user names them with `--model-path DIR` (repeatable) and `RUNNER_MODEL_PATHS` (os.pathsep-separated). Each is
either a folder, searched in ComfyUI's layout (`checkpoints/`, `diffusers/`, `controlnet/`, `loras/`, `vae/`,
`upscale_models/`, ...) and then flat, or a ComfyUI `extra_model_paths.yaml`, whose groups say which folders hold
which kind (`base_path` plus `checkpoints: models/checkpoints`, one or several paths a line). Names are found by
path only: identity comes from the files' content (runner.models.sources), so it does not depend on the folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..language.errors import Location, Problem, WorkflowError

ENV_VAR = "RUNNER_MODEL_PATHS"

# The ComfyUI folder names (folder_paths.py) that hold each kind of model runner loads, searched in this order.
# `diffusers` is ComfyUI's folder for diffusers-format pipeline folders; `t2i_adapter` shares controlnet's loader.
KIND_FOLDERS: dict[str, tuple[str, ...]] = {
    "pipeline": ("checkpoints", "diffusers"),
    "upscaler": ("upscale_models", "checkpoints", "diffusers"),
    "controlnet": ("controlnet", "t2i_adapter"),
    "lora": ("loras",),
    "vae": ("vae",),
}
LISTED_FOLDERS = ("checkpoints", "diffusers", "controlnet", "t2i_adapter", "loras", "vae", "upscale_models")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")


@dataclass(frozen=True)
class ModelRoot:
    """One entry of the model paths: a folder (ComfyUI layout, then flat) or the groups of an extra_model_paths.yaml."""

    given: str  # as the user wrote it
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


def yaml_root(path: Path, given: str) -> ModelRoot:
    """The folders of a ComfyUI extra_model_paths.yaml: each group's `base_path` (relative to the file's folder, `~`
    and $VARS expanded) joined with each line of each folder entry; other keys (is_default, custom kinds) are ignored."""
    from ..language.yaml_source import load_yaml, read_yaml_text

    data, smap = load_yaml(read_yaml_text(path), str(path))
    problems = []
    folders: dict[str, list[Path]] = {}
    for group, body in (data or {}).items() if isinstance(data, dict) else ():
        if not isinstance(body, dict):
            problems.append(Problem(smap.locate((group,)), (group,), "a group of extra_model_paths.yaml is a mapping "
                                    "(base_path: ..., checkpoints: ...)", "see ComfyUI's extra_model_paths.yaml.example"))
            continue
        base = Path(os.path.expanduser(os.path.expandvars(str(body.get("base_path") or ""))))
        if not base.is_absolute():
            base = path.parent / base
        for name, value in body.items():
            if name in ("base_path", "is_default") or not isinstance(value, str):
                continue
            for line in value.splitlines():
                line = line.strip()
                if line:
                    folders.setdefault(name, []).append((base / os.path.expanduser(os.path.expandvars(line))).resolve())
    if not isinstance(data, dict) and data is not None:
        problems.append(Problem(smap.locate(()), (), "extra_model_paths.yaml is a mapping of groups",
                                "see ComfyUI's extra_model_paths.yaml.example"))
    if problems:
        raise WorkflowError(problems)
    return ModelRoot(given, {name: tuple(paths) for name, paths in folders.items()})


def model_roots(cli_paths=(), environ=None) -> tuple[ModelRoot, ...]:
    """The --model-path entries, then those of RUNNER_MODEL_PATHS, as roots; WorkflowError for one that is neither
    a folder nor a YAML file (located at the option or the variable)."""
    environ = os.environ if environ is None else environ
    given = [("--model-path", str(p)) for p in cli_paths or ()]
    given += [(ENV_VAR, part) for part in (environ.get(ENV_VAR) or "").split(os.pathsep) if part.strip()]
    roots, problems = [], []
    for where, text in given:
        path = Path(os.path.expanduser(text)).resolve() if "\0" not in text else None
        if path is not None and path.is_dir():
            roots.append(folder_root(path, text))
        elif path is not None and path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
            roots.append(yaml_root(path, text))
        else:
            what = "does not exist" if path is None or not path.exists() else "is neither a folder nor a .yaml file"
            problems.append(Problem(Location(where), (), f"model path {text} {what}",
                                    "name a folder of models (ComfyUI's models/ folder, or any folder holding them) or "
                                    "a ComfyUI extra_model_paths.yaml" + (f"; {ENV_VAR} separates entries with "
                                                                          f"'{os.pathsep}'" if where == ENV_VAR else "")))
    if problems:
        raise WorkflowError(problems)
    unique = {}
    for root in roots:
        unique.setdefault((tuple(sorted(root.folders.items())), root.flat), root)
    return tuple(unique.values())


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
            if candidate.exists():
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
