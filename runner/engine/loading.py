"""Loading workflows the way every command does: the language layer, handed runner's node catalogue and its model
checks (so `validate` finds what `run` would: missing files, models found nowhere, wrong kinds, pickle weights)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..core.model_entry import Consent
from ..language import workflow as language
from ..language.workflow import Workflow
from ..nodes import NODE_TYPES

# why a workflow embedded in an image can never be allowed to run code, whatever the command line says
EMBEDDED_REFUSAL = "a workflow embedded in an image can never turn it on"


def consent_of(args) -> Consent:
    """What a command line allows the workflow's model entries to turn on (--allow-pickle, --trust-remote-code)."""
    return Consent.of(getattr(args, "allow_pickle", ()), getattr(args, "trust_remote_code", ()), "command line")


def load_workflow(path: str | Path, overrides: list[str] | None = None, *, text: str | None = None,
                  source: str | None = None, allow_paths=(), model_paths=(), check_files: bool = True,
                  home_readable: bool = True, consent: Consent | None = None) -> Workflow:
    """Parse and validate a workflow against every node type runner declares (raises WorkflowError). Input files
    come from the workflow's folder (unless `home_readable` is False: that folder was named by data, not by the user),
    or from one of `allow_paths` (--allow-path); bare model names are looked for in `model_paths` (--model-path) and
    RUNNER_MODEL_PATHS. With `check_files` False, neither input files nor model files need to exist here (an import
    writing a workflow for another machine). `consent` is what the person running it allows the model entries to turn
    on (--allow-pickle NAME, --trust-remote-code NAME); without it, an entry asking for either is refused."""
    from ..models.model_checks import model_findings
    from .model_paths import model_roots

    roots = model_roots(model_paths)
    return language.load_workflow(path, overrides, catalogue=NODE_TYPES, text=text, source=source, allow_paths=allow_paths,
                                  model_roots=roots, model_check=model_findings if check_files else None,
                                  require_files=check_files, home_readable=home_readable, consent=consent)


def load_for_run(path: Path, overrides: list[str], allow_paths=(), model_paths=(), consent: Consent | None = None) -> Workflow:
    """A workflow file, or the workflow embedded in a PNG that runner saved, as every front runs it: with the models a
    WF.lock beside it pins loaded at their locked commits (the pins join its overrides, so the manifest records them).

    An embedded workflow's relative paths start from the folder its `runner:workflow_path` text names (where it was
    run), but that text is data anyone can write: files are read only from the PNG's own folder and the folders the
    user allows (`allow_paths`), and no model entry of it may run code (allow_pickle, trust_remote_code)."""
    from ..records.lock import pinned_revisions

    workflow = _load_for_run(Path(path), overrides, allow_paths, model_paths, consent)
    pins = pinned_revisions(workflow)
    return _load_for_run(Path(path), list(overrides) + pins, allow_paths, model_paths, consent) if pins else workflow


def _load_for_run(path: Path, overrides: list[str], allow_paths, model_paths, consent: Consent | None) -> Workflow:
    if path.suffix.lower() != ".png":
        return load_workflow(path, overrides, allow_paths=allow_paths, model_paths=model_paths, consent=consent)
    from ..records.runs import embedded_workflow

    text, original = embedded_workflow(path)
    recorded = Path(original) if original and Path(original).is_absolute() else None
    home = recorded if recorded is not None and recorded.parent.is_dir() else path.with_suffix(".yaml")
    refused = replace(consent or Consent(), refused=EMBEDDED_REFUSAL)
    return load_workflow(home, overrides, text=text, source=f"{path} (embedded workflow)",
                         allow_paths=[path.resolve().parent, *allow_paths], model_paths=model_paths,
                         home_readable=False, consent=refused)
