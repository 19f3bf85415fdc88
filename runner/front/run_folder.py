"""A run folder: the resolved workflow, the published files, manifest.json and report.html, for one run of a plan."""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..core.atomic import write_atomic
from ..core.hashing import FileHashCache
from ..core.input_files import InputRefused
from ..core.paths import models_dir
from ..executor.cache import NodeCache
from ..executor.engine import NodeFailed, NodeResult, RunStopped
from ..executor.plan import Plan, Task, build_plan
from ..language.errors import Location, Problem, WorkflowError
from ..language.refs import Link
from ..language.workflow import Workflow
from ..nodes import NODE_TYPES
from .png_text import with_text
from .progress import LiveEvents, PlainEvents
from .provenance import a1111_name, a1111_parameters, git_state, png_size, saved_file_record

MANIFEST_VERSION = 1
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


def execute(executor, resources, workflow: Workflow, plan: Plan, out: Path, *, mode: str = "plain",
            force: set[str] = frozenset(), no_cache: bool = False, extra: dict | None = None,
            run_dir: Path | None = None, should_stop=None, label: str = "") -> Outcome:
    """Run a plan with `executor` into a new run folder: resolved workflow, published files, manifest (also when a node
    fails). `resources` (the Session's models) says what the run loaded, reused and released."""
    from rich.console import Console

    cache = executor.cache

    resolved_text = resolved_workflow_text(workflow, plan)
    try:  # nothing ran yet: a folder that cannot be written is a problem of the command line
        if run_dir is None:
            run_dir = _new_run_dir(out, workflow.name)
        else:
            run_dir.mkdir(parents=True)
        write_atomic(run_dir / "workflow.yaml", resolved_text.encode())
    except OSError as exc:
        raise WorkflowError([Problem(Location("--out"), (), f"cannot write the run folder {run_dir or out}: "
                                                             f"{exc.strerror or exc}", OUT_FIX)]) from None
    types = {node_id: workflow.nodes[node_id].type.name for node_id in plan.order}
    events = LiveEvents(types, Console(highlight=False)) if mode == "live" else PlainEvents(types, quiet=mode == "quiet",
                                                                                             label=label)
    publisher = Publisher(workflow, plan, cache, run_dir, resolved_text)
    status, exit_code, error, hint = "ok", 0, None, ""
    started = time.time()
    events.start(plan.order)
    try:
        executor.run(plan, events, force=force, no_cache=no_cache, after_node=publisher, should_stop=should_stop)
    except NodeFailed as failure:
        status, exit_code, error, hint = "failed", 1, str(failure), failure.hint
    except RunFolderUnwritable as failure:
        status, exit_code, error = "failed", 1, str(failure)
    except RunStopped as stop:
        status, exit_code, error = "interrupted", 130, f"{SUPERSEDED}: {stop}; finished nodes stay cached"
    except KeyboardInterrupt:
        status, exit_code, error = "interrupted", 130, "interrupted by the user (Ctrl-C); finished nodes stay cached"
    finally:
        events.stop()
    results = executor.last_results
    with signals_held():  # a Ctrl-C now waits until the record is complete, then stops the command as usual
        manifest = build_manifest(workflow, plan, results, publisher, status, error, started, resources)
        describe = getattr(executor, "describe", None)
        if describe is not None:
            manifest["executor"] = describe()
        manifest.update(extra or {})
        try:
            write_atomic(run_dir / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
        except OSError as exc:
            status, exit_code = ("failed" if status == "ok" else status), (exit_code or 1)
            error = (f"{error}; " if error else "") + f"manifest.json could not be written into {run_dir}: {exc.strerror or exc}"
            manifest.update(status=status, error=error)
        else:
            write_report(run_dir)
    return Outcome(run_dir, manifest, results, status, exit_code, error, hint)


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


def write_report(folder: Path) -> Path | None:
    """report.html (a run) or index.html (a sweep); a failure here is reported but never fails the run."""
    from .report import write_run_report, write_sweep_index

    try:
        return write_sweep_index(folder) if (folder / "index.json").is_file() else write_run_report(folder)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: report not written for {folder}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


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
    except (OSError, ModelUnavailable, UnknownTinyModel, InputRefused) as exc:
        node_id = getattr(exc, "node_id", None)
        path = ("nodes", node_id) if node_id else ()
        if getattr(exc, "model_path", None):  # where the model is written, not where it is used
            path = tuple(exc.model_path)
            entry = workflow.document.get("models", {}).get(path[1]) if path[0] == "models" else None
            if isinstance(entry, dict) and not isinstance(exc, PickleRefused):
                # the field at fault (a pickle refusal points at the entry that would have to say allow_pickle: true)
                path += (getattr(exc, "entry_field", "source"),)
        location = workflow.source_map.locate(path) if workflow.source_map else Location(str(workflow.path))
        message = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename else str(exc)
        hint = getattr(exc, "hint", "") or "fix the path (relative to the workflow file's folder)"
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


def check_out_folder(out: Path, *, create: bool = True) -> None:
    """WorkflowError (exit status 2, before anything runs) unless run folders can be written under `out`."""
    problem = out_folder_problem(out, create=create)
    if problem:
        raise WorkflowError([Problem(Location("--out"), (), problem, OUT_FIX)])


class RunFolderUnwritable(Exception):
    """A file of the run folder could not be written (a full disk, say) after nodes ran: the run fails (exit 1)."""


def _new_run_dir(out: Path, name: str) -> Path:
    while True:
        now = time.time()  # ids sort in start order: second, then millisecond, then a random tie-breaker
        run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}-" + secrets.token_hex(2)
        run_dir = out / name / run_id
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue


def resolved_workflow_text(workflow: Workflow, plan: Plan) -> str:
    """The workflow as run: overrides applied, random seeds replaced by the drawn ones."""
    document = json.loads(json.dumps(workflow.document))
    document.pop("sweep", None)  # a run is one variant: its swept values are among the overrides
    if workflow.seed == "random":
        document["seed"] = plan.workflow_seed
    for node_id, node in workflow.nodes.items():
        if getattr(node.fields, "seed", None) == "random" and node_id in plan.seeds:
            document["nodes"][node_id]["seed"] = plan.seeds[node_id]
    header = f"# resolved by runner from {workflow.path}" + (f" with {' '.join('--set ' + o for o in workflow.overrides)}" if workflow.overrides else "")
    return header + "\n" + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


class Publisher:
    """After each node (ran or cached), lets nodes with a publish step write files into the run folder."""

    def __init__(self, workflow: Workflow, plan: Plan, cache: NodeCache, run_dir: Path, resolved_text: str):
        self.workflow, self.plan, self.cache, self.run_dir, self.resolved_text = workflow, plan, cache, run_dir, resolved_text
        self.files: dict[str, list[str]] = {}

    def __call__(self, task: Task, result: NodeResult) -> None:
        node_type = NODE_TYPES[task.type_name]
        if node_type.publish is not None:
            try:
                self.files[task.node_id] = node_type.publish(PublishContext(self, task), self.workflow.nodes[task.node_id].fields)
            except OSError as exc:
                raise RunFolderUnwritable(f"node '{task.node_id}' ({task.type_name}) could not write its files into "
                                          f"{self.run_dir}: {exc.strerror or exc}; free some space or choose another "
                                          "--out (the node's result is cached: the next run only writes the files)") from None


class PublishContext:
    def __init__(self, publisher: Publisher, task: Task):
        self.publisher = publisher
        self.task = task
        self.node_id = task.node_id

    def image_sources(self, value) -> list[tuple[Link, int]]:
        sources = []
        for link in value if isinstance(value, list) else [value]:
            _kind, files = self._files(link)
            sources.extend((link, index) for index in range(len(files)))
        return sources

    def _files(self, link: Link) -> tuple[str, list[Path]]:
        return self.publisher.cache.output(self.task.upstream[link.node], link.output)

    def _weights_hash(self, source: dict) -> str | None:
        """sha256 of a model's main weights, as A1111's "Model hash" (the file itself, or the UNet's of a folder)."""
        from ..models.sources import ModelSource, local_folder

        folder = local_folder(ModelSource.from_data(source), models_dir(self.publisher.cache.root))
        if folder is None or not folder.exists():
            return None
        if folder.is_file():
            return self.publisher.cache.hashes.file_digest(folder)
        weights = sorted((folder / "unet").glob("*.safetensors")) or sorted(folder.glob("*.safetensors"))
        return self.publisher.cache.hashes.file_digest(weights[0]) if weights else None

    def publish_png(self, source, name: str) -> str:
        link, index = source if isinstance(source, tuple) else (source, 0)
        plan = self.publisher.plan
        seed = plan.seeds.get(link.node)
        texts = {
            "runner:workflow": self.publisher.resolved_text,
            "runner:workflow_path": str(self.publisher.workflow.path.resolve()),
            "runner:node": link.node,
            "runner:seed": json.dumps({"workflow_seed": plan.workflow_seed, "node_seed": seed}),
        }
        pixels = self.publisher.cache.read_output(self.task.upstream[link.node], link.output,
                                                  lambda _kind, paths: paths[index].read_bytes())
        source_task = plan.tasks[link.node]
        source_fields = self.publisher.workflow.nodes[link.node].fields
        model_ref = getattr(source_fields, "model", None)
        if model_ref:
            info = (self.publisher.cache.entry(source_task.key) or {}).get("info", {})
            loras = [(a1111_name(source_task.models[item.model]["entry"]["source"]), item.scale,
                      self._weights_hash(source_task.models[item.model])) for item in getattr(source_fields, "lora", [])]
            parameters = a1111_parameters(source_fields, info, seed, png_size(pixels),
                                          source_task.models[model_ref]["entry"]["source"],
                                          self._weights_hash(source_task.models[model_ref]), loras)
            if parameters:
                texts["parameters"] = parameters
        data = with_text(pixels, texts)
        write_atomic(self.publisher.run_dir / name, data)
        return name


def _cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _models_section(plan: Plan, cache: NodeCache) -> dict[str, dict]:
    """Each model's record, with the safety opt-ins in force: allow_pickle (and the pickle weight files it let in,
    where the model's files here have any) and trust_remote_code."""
    from ..models.sources import ModelSource, local_folder, model_record, pickle_weights

    hashes = cache.hashes
    section = {}
    for task in plan.tasks.values():
        for ref, data in task.models.items():
            if ref not in section:
                source = ModelSource.from_data(data)
                record = model_record(source, task.model_ids[ref], models_dir(cache.root), hashes)
                safety = {"allow_pickle": source.entry.allow_pickle, "trust_remote_code": source.entry.trust_remote_code}
                folder = local_folder(source, models_dir(cache.root)) if source.entry.allow_pickle else None
                if folder is not None and folder.exists():
                    weights = folder / source.entry.subfolder if source.entry.subfolder else folder
                    pickled = [f.name if folder.is_file() else f.relative_to(folder).as_posix()  # as in "files"
                               for f in pickle_weights(weights)]
                    if pickled:
                        safety["pickle_files"] = pickled
                section[ref] = {**record, "dtype": task.dtype, **safety}
    return section


def _input_hashes(cache: NodeCache, task: Task) -> dict[str, list[str]]:
    """Every linked input ("$node.output") with its sha256, read from the upstream cache entry ([] if never made)."""
    hashes = {}
    for link in task.inputs:
        node, output = link[1:].split(".", 1)
        key = task.upstream[node]
        entry = cache.entry(key) or {}
        hashes[link] = (entry.get("outputs") or {}).get(output, {}).get("sha256", [])
    return hashes


def _output_hashes(cache: NodeCache, key: str) -> dict[str, list[str]]:
    """sha256 of each stored output file, as recorded in the cache entry (empty when the node did not finish)."""
    entry = cache.entry(key) or {}
    return {name: output.get("sha256", []) for name, output in (entry.get("outputs") or {}).items()}


def build_manifest(workflow: Workflow, plan: Plan, results: dict[str, NodeResult], publisher: Publisher, status: str,
                   error: str | None, started: float, resources) -> dict:
    workflow_bytes = workflow.text.encode("utf-8")
    nodes = {}
    for node_id in plan.order:
        task = plan.tasks[node_id]
        result = results.get(node_id)
        nodes[node_id] = {
            "type": task.type_name,
            "implementation_version": NODE_TYPES[task.type_name].version,
            "key": task.key,
            "status": result.status if result else "not run",
            "cache": {"cached": "hit", "ran": "miss"}.get(result.status if result else "", None),
            "seconds": round(result.seconds, 4) if result else None,
            "seed": task.seed,
            "models": task.model_ids,
            "input_files": task.files,
            "inputs": _input_hashes(publisher.cache, task),
            "outputs": _output_hashes(publisher.cache, task.key),
            **({"published": publisher.files[node_id],
                "published_files": [saved_file_record(publisher.run_dir, name) for name in publisher.files[node_id]]}
               if node_id in publisher.files else {}),
            **(result.info if result else {}),
        }
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": publisher.run_dir.name,
        "cache_dir": str(publisher.cache.root.resolve()),
        "workflow": {"name": workflow.name, "path": str(workflow.path.resolve()), "sha256": hashlib.sha256(workflow_bytes).hexdigest(),
                     "overrides": workflow.overrides, "git": git_state(Path(workflow.path))},
        "status": status,
        "error": error,
        "allow_paths": [str(folder) for folder in workflow.allow_paths],
        "consents": workflow.consents,
        "model_paths": [root.given for root in workflow.model_roots],
        "allow_private_urls": plan.allow_private_urls,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 3),
        "seed": plan.workflow_seed,
        "device": plan.device,
        "dtype": plan.dtype,
        "libraries": plan.libraries,
        "device_name": _cpu_name() if plan.device == "cpu" else resources.environment.get("device_name"),
        "determinism": {"requested": plan.deterministic, **resources.environment},
        "models_loaded": resources.loads,
        "models_reused": resources.reused,
        "models_released": resources.released,
        "executor": {"name": "local"},
        "models": _models_section(plan, publisher.cache),
        "counts": {s: sum(1 for n in nodes.values() if n["status"] == s) for s in ("ran", "cached", "failed", "not run")},
        "nodes": nodes,
    }
