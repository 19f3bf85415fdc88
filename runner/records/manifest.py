"""manifest.json: what a run ran, from what, with which results (schemas/manifest.schema.json)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from ..core.paths import models_dir
from ..executor.cache import NodeCache
from ..core.atomic import write_atomic
from ..executor.engine import TRACEBACK_INFO, NodeResult
from ..executor.plan import Plan, Task
from ..language.workflow import Workflow
from ..nodes import NODE_TYPES
from .provenance import git_state, saved_file_record
from .publishing import Publisher

MANIFEST_VERSION = 1


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
            **({key: value for key, value in result.info.items() if key != TRACEBACK_INFO} if result else {}),
        }
        text = result.info.get(TRACEBACK_INFO) if result else None
        if text:  # a failed node's traceback: a file beside the manifest, named in its record
            name = f"traceback-{node_id}.txt"
            try:
                write_atomic(publisher.run_dir / name, text.encode("utf-8", errors="replace"))
            except OSError:
                pass  # the manifest still says what failed and why
            else:
                nodes[node_id]["traceback"] = name
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
