"""Loading workflows the way every command does: the language layer, handed runner's node catalogue and its model
checks (so `validate` finds what `run` would: missing files, models found nowhere, wrong kinds, pickle weights)."""

from __future__ import annotations

from pathlib import Path

from ..language import workflow as language
from ..language.workflow import Workflow
from ..nodes import NODE_TYPES


def load_workflow(path: str | Path, overrides: list[str] | None = None, *, text: str | None = None,
                  source: str | None = None, allow_paths=(), model_paths=(), check_files: bool = True) -> Workflow:
    """Parse and validate a workflow against every node type runner declares (raises WorkflowError). Input files
    come from the workflow's folder, or from one of `allow_paths` (--allow-path); bare model names are looked for in
    `model_paths` (--model-path) and RUNNER_MODEL_PATHS. With `check_files` False, neither input files nor model files
    need to exist here (an import writing a workflow for another machine)."""
    from ..models.model_checks import model_findings
    from .model_paths import model_roots

    roots = model_roots(model_paths)
    return language.load_workflow(path, overrides, catalogue=NODE_TYPES, text=text, source=source, allow_paths=allow_paths,
                                  model_roots=roots, model_check=model_findings if check_files else None,
                                  require_files=check_files)


def load_for_run(path: Path, overrides: list[str], allow_paths=(), model_paths=()) -> Workflow:
    """A workflow file, or the workflow embedded in a PNG that runner saved (relative paths from its original folder)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        return load_workflow(path, overrides, allow_paths=allow_paths, model_paths=model_paths)
    from .runs import embedded_workflow

    text, original = embedded_workflow(path)
    home = Path(original) if original and Path(original).parent.is_dir() else path.with_suffix(".yaml")
    return load_workflow(home, overrides, text=text, source=f"{path} (embedded workflow)", allow_paths=allow_paths,
                         model_paths=model_paths)
