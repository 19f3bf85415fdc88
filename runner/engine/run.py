"""A run of a plan into its run folder: the resolved workflow, the published files, manifest.json and report.html.

What each record holds is records/' business; this module runs the executor and writes them in order."""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic import write_atomic
from ..core.errors import CommandError, fix_of
from ..core.hashing import FileHashCache
from ..core.input_files import InputRefused
from ..core.runtime import DeviceRefused
from ..executor.engine import NodeFailed, NodeResult, RunStopped
from ..executor.plan import Plan, build_plan
from ..language.errors import Location, Problem, WorkflowError
from ..language.workflow import Workflow
from ..records.manifest import build_manifest
from ..records.publishing import Publisher, RunFolderUnwritable, resolved_workflow_text
from ..records.report import write_report
from .progress import LiveEvents, PlainEvents

SUPERSEDED = "superseded by a newer version of the workflow"


@dataclass
class Outcome:
    run_dir: Path
    manifest: dict
    results: dict[str, NodeResult]
    status: str
    exit_code: int
    error: str | None
    hint: str = ""  # how to fix the error, when it says
    exception: BaseException | None = None  # what the failed node raised (in this process: None from a remote worker)


def execute(executor, resources, workflow: Workflow, plan: Plan, out: Path, *, mode: str = "plain",
            force: set[str] = frozenset(), no_cache: bool = False, extra: dict | None = None,
            run_dir: Path | None = None, should_stop=None, label: str = "", events=None) -> Outcome:
    """Run a plan with `executor` into a new run folder: resolved workflow, published files, manifest (also when a node
    fails). `resources` (the Session's models) says what the run loaded, reused and released. `events`: a factory
    given the node types ({node id: type}) that returns the progress sink (PlainEvents' methods) instead of `mode`'s."""
    cache = executor.cache

    resolved_text = resolved_workflow_text(workflow, plan)
    try:  # nothing ran yet: a folder that cannot be written is a problem of the command line
        if run_dir is None:
            run_dir = _new_run_dir(out, workflow.name)
        else:
            run_dir.mkdir(parents=True)
        write_atomic(run_dir / "workflow.yaml", resolved_text.encode())
    except OSError as exc:
        raise CommandError([Problem(Location("--out"), (), f"cannot write the run folder {run_dir or out}: "
                                                             f"{exc.strerror or exc}", OUT_FIX)]) from None
    types = {node_id: workflow.nodes[node_id].type.name for node_id in plan.order}
    if events is not None:
        events = events(types)
    elif mode == "live":
        from rich.console import Console  # only here: a plain or quiet run does without rich

        events = LiveEvents(types, Console(highlight=False))
    else:
        events = PlainEvents(types, quiet=mode == "quiet", label=label)
    publisher = Publisher(workflow, plan, cache, run_dir, resolved_text)
    status, exit_code, error, hint, exception = "ok", 0, None, "", None
    started = time.time()
    events.start(plan.order)
    results: dict[str, NodeResult] = {}
    interrupted = "interrupted by the user (Ctrl-C); finished nodes stay cached"
    try:
        try:
            results = executor.run(plan, events, force=force, no_cache=no_cache, after_node=publisher,
                                   should_stop=should_stop)
        except NodeFailed as failure:
            status, exit_code, error, hint, exception = "failed", 1, str(failure), failure.hint, failure.error
            results = getattr(failure, "results", results)
        except RunFolderUnwritable as failure:
            status, exit_code, error = "failed", 1, str(failure)
            results = getattr(failure, "results", results)
        except RunStopped as stop:
            status, exit_code, error = "interrupted", 130, f"{stop.reason or SUPERSEDED}: {stop}; finished nodes stay cached"
            results = getattr(stop, "results", results)
        except KeyboardInterrupt as stop:
            status, exit_code, error = "interrupted", 130, interrupted
            results = getattr(stop, "results", results)
        finally:
            events.stop()
    except KeyboardInterrupt:  # a Ctrl-C after the last node, as the progress display closed: the record still follows
        status, exit_code, error = "interrupted", 130, interrupted
    with signals_held():  # a Ctrl-C now waits until the record is complete, then stops the command as usual
        manifest = build_manifest(workflow, plan, results, publisher, status, error, started, resources)
        manifest["executor"] = executor.describe()
        manifest.update(extra or {})
        try:
            write_atomic(run_dir / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
        except OSError as exc:
            status, exit_code = ("failed" if status == "ok" else status), (exit_code or 1)
            error = (f"{error}; " if error else "") + f"manifest.json could not be written into {run_dir}: {exc.strerror or exc}"
            manifest.update(status=status, error=error)
        else:
            write_report(run_dir)
    return Outcome(run_dir, manifest, results, status, exit_code, error, hint, exception)


class signals_held:
    """Block SIGINT, SIGTERM and SIGHUP for a moment (POSIX): one that arrives is delivered when the block ends."""

    SIGNALS = {getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)}

    def __enter__(self):
        self.active = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
        if self.active:
            signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)
        return self

    def __exit__(self, *exc):
        if self.active:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self.SIGNALS)
        return False


def plan_or_problems(workflow: Workflow, hash_cache: FileHashCache, targets: list[str] | None,
                     deterministic: bool = False, device: str = "auto", allow_private_urls: bool | list[str] = False) -> Plan:
    """Build the plan; a missing input file or model path becomes a located validation problem."""
    from ..models.sources import ModelUnavailable, PickleRefused, describe
    from ..models.tiny import UnknownTinyModel

    try:
        try:
            return build_plan(workflow, lambda entry, base_dir, kind: describe(entry, base_dir, hash_cache, kind,
                                                                             workflow.model_roots), targets,
                              deterministic, device, allow_private_urls)
        finally:
            hash_cache.save()
    except (OSError, ModelUnavailable, UnknownTinyModel, InputRefused, DeviceRefused) as exc:
        node_id = getattr(exc, "node_id", None)
        path = ("nodes", node_id) if node_id else ()
        if isinstance(exc, DeviceRefused):  # at the node's own field, else at the workflow's that it took
            body = workflow.document.get("nodes", {}).get(node_id)
            path = (path if isinstance(body, dict) and exc.field[0] in body else ()) + exc.field
        if getattr(exc, "model_path", None):  # where the model is written, not where it is used
            path = tuple(exc.model_path)
            entry = workflow.document.get("models", {}).get(path[1]) if path[0] == "models" else None
            if isinstance(entry, dict) and not isinstance(exc, PickleRefused):
                # the field at fault (a pickle refusal points at the entry that would have to say allow_pickle: true)
                path += (getattr(exc, "entry_field", "source"),)
        location = workflow.source_map.locate(path) if workflow.source_map else Location(str(workflow.path))
        message = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename else str(exc)
        hint = fix_of(exc) or "fix the path (relative to the workflow file's folder)"
        if isinstance(exc, PickleRefused):
            message = exc.what  # the fix is the hint
            if tuple(getattr(exc, "model_path", ()))[:1] == ("nodes",):
                hint += " (an inline model has no entry: name it under models:, as {source: ..., allow_pickle: true})"
        raise WorkflowError([Problem(location, path, message, hint)]) from None


def out_folder_problem(out: Path, *, create: bool) -> str | None:
    """Why run folders cannot be written under `out` (None when they can). With `create`, the folder is made and a
    probe file written and removed (what the run will do); without, nothing is written: the nearest existing folder
    must be one this process may write into."""
    import errno
    import os
    import tempfile

    out = Path(out)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        return (f"{out} is a file, not a folder" if existing == out else
                f"{out} cannot be made: {existing} is a file, not a folder")
    if not create:
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"cannot write into {existing}: permission denied"
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".runner-probe-", dir=out)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reasons = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                   errno.EROFS: "it is on a read-only file system", errno.ENOSPC: "the disk is full",
                   errno.EDQUOT: "the disk quota is used up"}
        return f"cannot write into {out}: {reasons.get(exc.errno, exc.strerror or str(exc))}"
    return None


OUT_FIX = "choose a folder you can write to (--out DIR; Python: Session(out=...)), or fix this one (permissions, free space)"


def refuse_link(folder: Path) -> None:
    """CommandError when the workflow's folder under --out is a symbolic link: runs are written only inside the
    output folder, never through a link someone planted there."""
    if folder.is_symlink():
        raise CommandError([Problem(Location("--out"), (), f"{folder} is a symbolic link (to {os.readlink(folder)}): "
                                    "runner writes run folders only inside the output folder",
                                    "remove the link (runner makes the folder), or choose another --out")])


def check_out_folder(out: Path, *, create: bool = True) -> None:
    """CommandError (exit status 2, before anything runs) unless run folders can be written under `out`."""
    problem = out_folder_problem(out, create=create)
    if problem:
        raise CommandError([Problem(Location("--out"), (), problem, OUT_FIX)])


def _new_run_dir(out: Path, name: str) -> Path:
    refuse_link(out / name)
    while True:
        now = time.time()  # ids sort in start order: second, then millisecond, then a random tie-breaker
        run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}-" + secrets.token_hex(2)
        run_dir = out / name / run_id
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue


