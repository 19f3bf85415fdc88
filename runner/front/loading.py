"""Loading workflows the way every command does: the language layer, handed runner's node catalogue."""

from __future__ import annotations

from pathlib import Path

from ..language import workflow as language
from ..language.workflow import Workflow
from ..nodes import NODE_TYPES


def load_workflow(path: str | Path, overrides: list[str] | None = None, *, text: str | None = None,
                  source: str | None = None, allow_paths=()) -> Workflow:
    """Parse and validate a workflow against every node type runner declares (raises WorkflowError). Input files
    come from the workflow's folder, or from one of `allow_paths` (--allow-path)."""
    return language.load_workflow(path, overrides, catalogue=NODE_TYPES, text=text, source=source, allow_paths=allow_paths)


def load_for_run(path: Path, overrides: list[str], allow_paths=()) -> Workflow:
    """A workflow file, or the workflow embedded in a PNG that runner saved (relative paths from its original folder)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        return load_workflow(path, overrides, allow_paths=allow_paths)
    from .runs import embedded_workflow

    text, original = embedded_workflow(path)
    home = Path(original) if original and Path(original).parent.is_dir() else path.with_suffix(".yaml")
    return load_workflow(home, overrides, text=text, source=f"{path} (embedded workflow)", allow_paths=allow_paths)
