"""Turn a validated workflow into plain tasks, each with its cache key, before anything runs.

A node's key is the sha256 of everything that determines its outputs: node
type and implementation version, resolved field values, the keys of the
upstream outputs it reads, the content hash of files it reads, the identity
of the models it uses, its seed, the device/dtype and the library versions.
Computing keys imports no torch, so a fully cached run never does.

A task is plain data (JSON-able: `Task.to_data()` / `Task.from_data()`), so it
can run in this process or another one and land under the same key. What a
model source is and how it is identified is not the executor's business: the
front hands build_plan a `describe(entry, base_dir, kind) -> (source data, identity)`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.input_files import confined_path, sha256_input
from ..core.installed import installed_versions
from ..core.model_entry import ModelEntry
from ..core.runtime import DeviceRefused, device_problems
from ..language.fields import (
    InputFile,
    KeyedWhenSet,
    ModelField,
    field_values,
    iter_marked,
    resolve_entry,
)
from ..language.refs import Link
from ..language.workflow import Workflow

Describe = Callable[[ModelEntry, Path, str], tuple[dict, str]]  # (entry, base dir, kind the field expects)

KEY_LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "pillow", "opencv-python-headless")
SEED_MAX = 2**32


@dataclass
class Task:
    """One node to run, as plain data: everything an executor (local or remote) needs."""

    node_id: str
    type_name: str
    fields: dict[str, Any]  # the node's field values, links as {"$link": [node, output]} (see encode_fields)
    key: str
    seed: int | None
    upstream: dict[str, str]  # node id -> cache key of each node this one reads from
    inputs: list[str]  # the outputs it reads, as "$node.output" (default outputs named)
    models: dict[str, dict]  # model ref as written -> its source as plain data
    model_ids: dict[str, str]  # model ref as written -> identity
    files: dict[str, str]  # input file path as written -> sha256
    device: str
    dtype: str
    base_dir: str = "."  # the folder the workflow's relative paths start from
    offload: str = "none"  # the workflow's default; a node's own `offload` field wins (not in the key: same outputs)
    deterministic: bool = False
    # URLs may reach non-public addresses: True (all), or a list of networks (not in the key: same bytes)
    allow_private_urls: bool | list[str] = False
    # the workflow's prompt_syntax (in the key of nodes with prompts when it is not plain: other embeddings)
    prompt_syntax: str = "plain"
    # the only outputs the plan reads from it (["latents"]: the decode can be skipped), None: all
    only_outputs: list[str] | None = None
    # computed in one call with other tasks of its node type (a sweep's batch; see `assign_batches`): {"index": its
    # place, "members": [{"node_id", "key" (None: computed, not stored), "seed", "fields": {varying field: value}}]}.
    # Not in the key: the entry is this task's; how it was computed is recorded in its info
    batch: dict | None = None

    def to_data(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Task":
        return cls(**data)


def encode_fields(fields) -> dict[str, Any]:
    """A node's validated fields as JSON-able data; `decode_links` turns it back into what validates the same."""

    def encode(value: Any) -> Any:
        if isinstance(value, Link):
            return {"$link": [value.node, value.output]}
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(v) for v in value]
        return value

    return encode(field_values(fields))


def decode_links(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$link"}:
            node, output = value["$link"]
            return Link(node, output)
        return {k: decode_links(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_links(v) for v in value]
    return value


@dataclass
class Plan:
    tasks: dict[str, Task]  # in execution order
    order: list[str]
    workflow_seed: int
    device: str
    dtype: str
    libraries: dict[str, str]
    seeds: dict[str, int] = field(default_factory=dict)
    deterministic: bool = False
    allow_private_urls: bool | list[str] = False


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    from .. import __version__  # the code that runs (pyproject reads its version from it)

    found = installed_versions(KEY_LIBRARIES + ("huggingface_hub", "safetensors"))
    return (*((name, version or "absent") for name, version in found.items()), ("runner", __version__))


def library_versions() -> dict[str, str]:
    """Python and the libraries that can change outputs (read once per process: a Session's runs share them)."""
    return {"python": sys.version.split()[0], **dict(_installed_versions())}


def probe_device(requested: str) -> str:
    """Resolve `auto` without importing torch: cuda when an NVIDIA device and a CUDA build of torch exist, mps on Apple silicon."""
    if requested != "auto":
        return requested
    import platform

    torch_version = dict(_installed_versions())["torch"]
    if torch_version == "absent":
        return "cpu"
    if Path("/dev/nvidiactl").exists() and "+cpu" not in torch_version:
        return "cuda"
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"


def resolve_dtype(requested: str, device: str) -> str:
    if requested != "auto":
        return requested
    return "float16" if device.startswith("cuda") else "float32"


def derived_seed(workflow_seed: int, node_id: str) -> int:
    """A node's default seed: depends only on the workflow seed and its own id."""
    digest = hashlib.sha256(f"{workflow_seed}/{node_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def build_plan(workflow: Workflow, describe: Describe, targets: list[str] | None = None,
               deterministic: bool = False, device: str = "auto", allow_private_urls: bool | list[str] = False) -> Plan:
    """The plan for `workflow` (or for what `targets` need). `device` applies where the workflow says `device: auto`;
    `allow_private_urls` goes to every task (see runner.nodes.url_fetch)."""
    device = probe_device(workflow.device if workflow.device != "auto" else device)
    dtype = resolve_dtype(workflow.dtype, device)
    libraries = library_versions()
    workflow_seed = secrets.randbelow(SEED_MAX) if workflow.seed == "random" else int(workflow.seed)
    needed = workflow.graph.needed(targets) if targets else set(workflow.nodes)
    order = workflow.graph.order(needed)
    environment = {"device": device, "dtype": dtype, "libraries": {k: libraries[k] for k in KEY_LIBRARIES}}
    if deterministic:  # PyTorch's deterministic kernels can give other numbers than the default ones
        environment["deterministic"] = True
    tasks: dict[str, Task] = {}
    seeds: dict[str, int] = {}
    identities: dict[str, tuple[dict, str]] = {}
    read = outputs_read(workflow, order)
    for node_id in order:
        try:
            tasks[node_id] = _task(workflow, node_id, tasks, identities, seeds, describe, workflow_seed, environment,
                                   allow_private_urls, read.get(node_id, set()))
        except Exception as exc:
            exc.node_id = node_id  # type: ignore[attr-defined]  (lets the CLI point at the node)
            raise
    return Plan(tasks, order, workflow_seed, device, dtype, libraries, seeds, deterministic, allow_private_urls)


def outputs_read(workflow: Workflow, order: list[str]) -> dict[str, set[str]]:
    """For each node, the outputs the plan's other nodes read from it (default outputs named)."""
    read: dict[str, set[str]] = {}
    for node_id in order:
        for link, _accepts, _path in workflow.nodes[node_id].links():
            read.setdefault(link.node, set()).add(link.output or workflow.nodes[link.node].type.default_output)
    return read


# a generation node whose readers all take its latents skips the VAE decode (output_type="latent"), as diffusers'
# docs and ComfyUI do for a base handing over to a refiner; a node nobody reads (the run's result) always decodes
LATENT_ONLY = {"latents"}


def _task(workflow: Workflow, node_id: str, tasks: dict[str, Task], identities: dict, seeds: dict[str, int],
          describe: Describe, workflow_seed: int, environment: dict, allow_private_urls: bool | list[str] = False,
          read: set[str] = frozenset()) -> Task:
    node = workflow.nodes[node_id]
    device, dtype = environment["device"], environment["dtype"]
    upstream, inputs = {}, []
    for link, _accepts, _path in node.links():
        upstream[link.node] = tasks[link.node].key
        named = f"${link.node}.{link.output or workflow.nodes[link.node].type.default_output}"
        if named not in inputs:
            inputs.append(named)
    models, model_ids = {}, {}
    for ref, marker, path in iter_marked(node.fields, ModelField):
        if ref not in identities:
            try:
                identities[ref] = describe(resolve_entry(ref, workflow.models), workflow.base_dir, marker.kind)
            except Exception as exc:
                # where the model is written: its entry under models:, or the node's field for an inline source
                name = ref[len("$models."):] if ref.startswith("$models.") else None
                exc.model_path = ("models", name) if name in workflow.models else ("nodes", node_id, *path)  # type: ignore[attr-defined]
                raise
        models[ref], model_ids[ref] = identities[ref]
    files = {}
    for relative, _marker, _path in iter_marked(node.fields, InputFile):  # checked again: the file may have changed
        files[relative] = sha256_input(confined_path(workflow.base_dir, relative, workflow.allow_paths,
                                                   home=workflow.home_readable), relative)
    for path, message, fix in device_problems(field_values(node.fields), device):
        raise DeviceRefused(message, fix, path)  # located by the front: the node's field, or the workflow's
    seed = None
    if node.type.takes_seed:
        chosen = node.seed
        seed = secrets.randbelow(SEED_MAX) if chosen == "random" else (derived_seed(workflow_seed, node_id) if chosen is None else chosen)
        seeds[node_id] = seed
    material = {
        "type": node.type.name,
        "version": node.type.version,
        "fields": _keyed_fields(node.fields, upstream, model_ids, workflow),
        "files": files,
        "seed": seed,
        **environment,
    }
    syntax = prompt_syntax(workflow, node)
    if syntax != "plain":  # plain keeps the keys nodes had before the setting existed
        material["prompt_syntax"] = syntax
    only = sorted(read) if read and read <= LATENT_ONLY and LATENT_ONLY < set(node.type.outputs) else None
    if only:  # its entry holds only these outputs: another key than the node decoding its image
        material["outputs"] = only
    key = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
    return Task(node_id, node.type.name, encode_fields(node.fields), key, seed, upstream, inputs, models, model_ids, files,
                device, dtype, str(workflow.base_dir), workflow.offload, bool(environment.get("deterministic")),
                allow_private_urls, syntax, only)


def batch_signature(task: Task, varying: tuple[str, ...]) -> str:
    """What must be equal for tasks to share one call: everything but their node id, key, seed and the `varying`
    fields their node type declares (upstream keys, models, the other fields, device, dtype included)."""
    data = {name: value for name, value in task.to_data().items() if name not in ("node_id", "key", "seed", "batch")}
    data["fields"] = {name: value for name, value in task.fields.items() if name not in varying}
    return json.dumps(data, sort_keys=True, default=str)


def assign_batches(tasks: list[Task], varying: Callable[[str], tuple[str, ...] | None], size: int) -> list[list[Task]]:
    """Group tasks that differ only in seed and their node type's varying fields (`varying(type_name)`: those
    fields, None where the type does not batch), in order of first appearance, `size` at most per group; each
    member of a group of two or more gets its `batch` (the same members, its own index). Tasks with the same key
    count once. The groups, each in call order."""
    groups: dict[str, list[Task]] = {}
    seen: set[str] = set()
    for task in tasks:
        fields = varying(task.type_name)
        if fields is None or task.seed is None or task.key in seen:
            continue
        seen.add(task.key)
        groups.setdefault(batch_signature(task, fields), []).append(task)
    batches = []
    for group in groups.values():
        for start in range(0, len(group), max(1, size)):
            chunk = group[start:start + max(1, size)]
            if len(chunk) < 2:
                continue
            fields = varying(chunk[0].type_name) or ()
            members = [{"node_id": t.node_id, "key": t.key, "seed": t.seed,
                        "fields": {name: t.fields[name] for name in fields if name in t.fields}} for t in chunk]
            for index, task in enumerate(chunk):
                task.batch = {"index": index, "members": members}
            batches.append(chunk)
    return batches


def batch_member(task: Task, member: dict) -> Task:
    """The task of one member of `task`'s batch: `task` with the member's node id, key, seed and varying fields."""
    data = task.to_data()
    data.update(node_id=member["node_id"], key=member["key"], seed=member["seed"],
                fields={**task.fields, **member["fields"]}, batch=None)
    return Task.from_data(data)


def recorded_batch(task: Task, record: dict) -> dict:
    """The batch a run recorded for `task` (its info's `batch`: size, index, seeds, the varying fields' values), as
    the task's `batch` again: the same call is rebuilt, the other members computed but not stored (key None)."""
    fields = record.get("fields") or {}
    members = [{"node_id": task.node_id, "key": task.key if index == record["index"] else None, "seed": int(seed),
                "fields": {name: values[index] for name, values in fields.items()}}
               for index, seed in enumerate(record["seeds"])]
    return {"index": int(record["index"]), "members": members}


def prompt_syntax(workflow: Workflow, node) -> str:
    """How this node's prompts are read: the workflow's prompt_syntax for a node that has a prompt, else plain."""
    has_prompt = any(getattr(node.fields, name, None) for name in ("prompt", "negative_prompt"))
    return workflow.prompt_syntax if has_prompt else "plain"


def _unkeyed(fields) -> set[str]:
    """The fields added after keys were first made (KeyedWhenSet) that are at their default: not part of the key."""
    out = set()
    for name, info in type(fields).model_fields.items():
        if any(isinstance(meta, KeyedWhenSet) for meta in info.metadata) and \
                getattr(fields, name) == info.get_default(call_default_factory=True):
            out.add(info.alias or name)
    return out


def _keyed_fields(fields, upstream: dict[str, str], model_ids: dict[str, str], workflow: Workflow) -> Any:
    """Field values with links replaced by upstream keys and model refs by identities."""
    unkeyed = _unkeyed(fields)  # once, not per field: a factory default's signature is read on each call (slow)
    data = {k: v for k, v in field_values(fields).items() if k not in ("type", "seed") and k not in unkeyed}
    model_refs = {path for _v, _m, path in iter_marked(fields, ModelField)}

    def convert(value: Any, path: tuple) -> Any:
        if isinstance(value, Link):
            output = value.output or workflow.nodes[value.node].type.default_output
            return {"link": upstream[value.node], "output": output}
        if path in model_refs:
            return {"model": model_ids[value]}
        if isinstance(value, dict):
            return {k: convert(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v, path + (i,)) for i, v in enumerate(value)]
        return value

    return convert(data, ())
