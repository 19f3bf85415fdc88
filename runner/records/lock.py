"""`runner lock WF` pins every model of a workflow; `runner run` honours WF.lock when it exists.

The lock file (`<workflow>.lock`, JSON) records for each model reference its
source, the hub commit its revision resolved to, and the sha256 of every
weight and config file. Runs then load hub models at the locked commit and
stop, before anything runs, when a pinned file no longer matches.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.atomic import write_atomic
from ..core.hashing import FileHashCache
from ..language.errors import Location, Problem, WorkflowError
from ..language.fields import ModelField, iter_marked, resolve_entry
from ..language.workflow import Workflow
from ..models.sources import classify, download_command, identity, model_record

LOCK_VERSION = 1


def lock_path(workflow_path: Path) -> Path:
    return workflow_path.with_name(workflow_path.name + ".lock")


def model_refs(workflow: Workflow) -> dict[str, str]:
    """Each model ref the nodes use -> the kind of model its first use expects."""
    refs: dict[str, str] = {}
    for node in workflow.nodes.values():
        for ref, marker, _path in iter_marked(node.fields, ModelField):
            refs.setdefault(ref, marker.kind)
    return refs


def _source(workflow: Workflow, ref: str, kind: str):
    return classify(resolve_entry(ref, workflow.models), workflow.base_dir, workflow.model_roots, kind)


def write_lock(workflow: Workflow, models_dir: Path, hashes: FileHashCache) -> Path:
    """Pin every model the workflow uses (tiny models are built first so that their files can be hashed)."""
    pins = {}
    for ref, kind in model_refs(workflow).items():
        source = _source(workflow, ref, kind)
        if source.kind == "tiny":
            from ..models.tiny import ensure_tiny

            ensure_tiny(source.location, models_dir / "tiny")
        record = model_record(source, identity(source, hashes), models_dir, hashes)
        if source.kind == "hub" and not record.get("commit"):
            raise WorkflowError([Problem(Location(str(workflow.path)), (), f"cannot lock '{source.label}': revision "
                                         f"{source.entry.revision or 'main'} is not in the local Hugging Face cache",
                                         f"download it first: {download_command(source)}")])
        pins[ref] = record
    path = lock_path(workflow.path)
    write_atomic(path, json.dumps({"lock_version": LOCK_VERSION, "workflow": workflow.path.name, "models": pins}, indent=2) + "\n")
    return path


MAX_LOCK_BYTES = 1 << 20  # a lock names a few models: far below this


def read_lock(path: Path) -> dict:
    """WF.lock as written by `runner lock`; anything else (damaged, hand-edited, hostile) is a located error, exit 2."""
    fix = f"re-create it with 'runner lock {path.name.removesuffix('.lock')}', or delete {path.name}"
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_LOCK_BYTES + 1)
        if len(data) > MAX_LOCK_BYTES:
            raise ValueError(f"it is larger than {MAX_LOCK_BYTES:,} bytes")
        lock = json.loads(data.decode("utf-8"))
    except OSError as exc:
        raise WorkflowError([Problem(Location(str(path)), (), f"the lock file cannot be read: {exc.strerror or exc}", fix)]) from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep to read
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise WorkflowError([Problem(Location(str(path)), (), f"the lock file is not what 'runner lock' writes: {reason}",
                                     fix)]) from None
    models = lock.get("models") if isinstance(lock, dict) else None
    if not isinstance(models, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in models.items()):
        raise WorkflowError([Problem(Location(str(path)), ("models",), "the lock file is not what 'runner lock' writes: "
                                     "it needs a 'models' mapping of model references to their pins", fix)])
    return lock


def pinned_revisions(workflow: Workflow) -> list[str]:
    """--set overrides that load every locked hub model at its locked commit."""
    path = lock_path(workflow.path)
    if not path.is_file():
        return []
    overrides = []
    for ref, pin in read_lock(path)["models"].items():
        name = ref[len("$models."):] if ref.startswith("$models.") else None
        if name and pin.get("kind") == "hub" and pin.get("commit"):
            overrides.append(f"models.{name}={json.dumps({**_entry_fields(workflow, name), 'revision': pin['commit']})}")
    return overrides


def _entry_fields(workflow: Workflow, name: str) -> dict:
    entry = workflow.models[name]
    return {k: v for k, v in entry.model_dump().items() if v not in (None, False)}


def check_lock(workflow: Workflow, models_dir: Path, hashes: FileHashCache) -> dict | None:
    """Compare the models with WF.lock; raise WorkflowError naming every changed file. Returns the lock, if any."""
    path = lock_path(workflow.path)
    if not path.is_file():
        return None
    lock = read_lock(path)
    problems = []
    kinds = model_refs(workflow)
    for ref, pin in lock["models"].items():
        if ref.startswith("$models.") and ref[len("$models."):] not in workflow.models:
            continue  # a model the workflow no longer names
        source = _source(workflow, ref, kinds.get(ref, "pipeline"))
        current = model_record(source, identity(source, hashes), models_dir, hashes)
        if pin.get("source") != current.get("source"):
            problems.append(f"{ref}: locked source {pin.get('source')}, the workflow now says {current.get('source')}")
            continue
        if "files" not in current:
            continue  # not on this machine yet (a tiny model is built on first use; hub files load at the pinned commit)
        for file, digest in pin.get("files", {}).items():
            now = current["files"].get(file)
            if now != digest:
                problems.append(f"{ref} ({pin['source']}): pinned file {file} " + ("is missing" if now is None else
                                f"changed (sha256 {digest[:12]} locked, {now[:12]} now)"))
    if problems:
        raise WorkflowError([Problem(Location(str(path)), (), problem, f"restore the model, or re-pin with 'runner lock {workflow.path}'")
                             for problem in problems])
    return lock
