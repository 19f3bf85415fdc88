"""The model paths of a command: --model-path entries, then RUNNER_MODEL_PATHS, each a folder or a ComfyUI
extra_model_paths.yaml (read with the workflow reader's limits), as the roots runner.models.model_folders searches."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import CommandError, Location, Problem
from ..language.yaml_source import load_yaml, read_yaml_text
from ..models.model_folders import ModelRoot, folder_root

ENV_VAR = "RUNNER_MODEL_PATHS"


def yaml_root(path: Path, given: str) -> ModelRoot:
    """The folders of a ComfyUI extra_model_paths.yaml: each group's `base_path` (relative to the file's folder, `~`
    and $VARS expanded) joined with each line of each folder entry; other keys (is_default, custom kinds) are ignored."""
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
        raise CommandError(problems)
    return ModelRoot(given, {name: tuple(paths) for name, paths in folders.items()})


def model_roots(cli_paths=(), environ=None) -> tuple[ModelRoot, ...]:
    """The --model-path entries, then those of RUNNER_MODEL_PATHS, as roots; CommandError for one that is neither
    a folder nor a YAML file (located at the option or the variable)."""
    environ = os.environ if environ is None else environ
    given = [("--model-path", str(p)) for p in cli_paths or ()]
    given += [(ENV_VAR, part) for part in (environ.get(ENV_VAR) or "").split(os.pathsep) if part.strip()]
    roots, problems = [], []
    for where, text in given:
        try:
            path = Path(os.path.expanduser(text)).resolve() if "\0" not in text else None
            kind = None if path is None else "folder" if path.is_dir() else "file" if path.is_file() else None
        except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError from resolve), a name too long, ...
            path, kind, reason = None, None, str(exc)
        else:
            reason = ""
        if kind == "folder":
            roots.append(folder_root(path, str(path)))
        elif kind == "file" and path.suffix.lower() in (".yaml", ".yml"):
            roots.append(yaml_root(path, str(path)))
        else:
            what = (f"cannot be read ({reason})" if reason else "does not exist" if kind is None
                    else "is neither a folder nor a .yaml file")
            problems.append(Problem(Location(where), (), f"model path {text} {what}",
                                    "name a folder of models (ComfyUI's models/ folder, or any folder holding them) or "
                                    "a ComfyUI extra_model_paths.yaml" + (f"; {ENV_VAR} separates entries with "
                                                                          f"'{os.pathsep}'" if where == ENV_VAR else "")))
    if problems:
        raise CommandError(problems)
    unique = {}
    for root in roots:
        unique.setdefault((tuple(sorted(root.folders.items())), root.flat), root)
    return tuple(unique.values())
