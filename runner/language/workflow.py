"""Load a workflow file: parse, override, resolve references, validate, check links and cycles.

Every problem found is collected and reported together, each with its place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ..core.empty import empty_dict
from ..core.input_files import InputRefused, check_input
from ..core.model_entry import NO_CONSENT, OPT_INS, PARTS, Consent, ModelEntry
from ..core.model_findings import ModelFinding
from ..graph.dag import Graph
from .errors import Location, Problem, WorkflowError, did_you_mean
from ..core.runtime import RUNTIME_OPTIONS
from .fields import (
    Accepts,
    Attention,
    Catalogue,
    Compile,
    CheckContext,
    Fields,
    InputFile,
    ModelField,
    NodeDeclaration,
    Offload,
    Quantize,
    Seed,
    StepCache,
    field_values,
    iter_marked,
)
from .link_types import accepts_at, check_link, links_in, stray_link
from .overrides import apply_overrides
from .plain_words import pydantic_problems
from .refs import MODEL_REF_PREFIX, NAME, NODE_ID, RESERVED, Link, resolve_references, unresolve
from .yaml_source import SourceMap, load_yaml, read_yaml_text

MAX_NODES = 1000  # nodes in one workflow: a long chain of hand-written steps is tens; generated ones stay far below
MAX_PARAMS = 1000  # params in one workflow (after --set): knobs for a person to turn
WORKFLOW_NAME = r"^[a-z0-9_-]+$"
NAME_MAX = 100  # a folder name under outputs/ (file systems allow 255 bytes; run ids and sweeps add their own)
NODE_ID_MAX = 100  # node ids name files (NODE_ID.png) and appear in every message
DEVICE = r"^(auto|cpu|mps|cuda(:[0-9]{1,4})?)$"  # a GPU index of at most 4 digits: no machine has more


ParamName = Annotated[str, Field(pattern=NAME.pattern)]


class Sweep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=empty_dict, description="PATH: [values], all combinations")
    zip: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=empty_dict, description="PATH: [values], paired")


class WorkflowHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = Field(..., description="workflow format version; only 1 exists")
    name: str | None = Field(None, pattern=WORKFLOW_NAME, max_length=NAME_MAX,
                             description="run folder name; default: the file stem")
    description: str = Field("", description="free text")
    # the bounds sit on the integer (Seed): on the union, 'random' met `>= 0` and crashed validation with a TypeError
    seed: Seed = Field(0, description="workflow seed; node seeds derive from it and the node id; 'random' draws one "
                                      "(recorded)")
    device: str = Field("auto", pattern=DEVICE, description="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description="auto = float16 on cuda, float32 elsewhere")
    offload: Offload = Field(
        "none", description="CPU offload for generation nodes on CUDA (model: whole models, sequential: layer by layer, "
                            "group: diffusers' group offloading, layers streamed in ahead of use); "
                            "a node's own 'offload' wins; ignored with a warning on CPU")
    vae_slicing: bool | None = Field(None, description="decode a batch of images one at a time (the VAE's "
                                                        "enable_slicing: less memory) in every generation node; a node's "
                                                        "own value wins")
    channels_last: bool | None = Field(None, description="the denoiser and VAE in channels-last memory format (faster "
                                                          "convolutions on CUDA) in every generation node; a node's own wins")
    attention: Attention | None = Field(None, description="the denoiser's attention backend (diffusers' "
                                                           "set_attention_backend: native, flash, sage, xformers, ...) in "
                                                           "every generation node; a node's own wins; default: native")
    compile: Compile | None = Field(None, description="torch.compile of the denoiser (true, or {mode, fullgraph}) in every "
                                                     "generation node; compiled once per Session; a node's own wins")
    quantize: Quantize | None = Field(None, description="load the checkpoints of every generation node quantized: int8, "
                                                         "fp8, nf4 (the denoiser), or {denoiser: ..., text_encoders: ...}; "
                                                         "a node's own wins")
    step_cache: StepCache | None = Field(None, description="a step cache for transformer denoisers (SD3, FLUX.1) in every "
                                                            "generation node that takes one; a node's own wins")
    prompt_syntax: Literal["plain", "weighted"] = Field(
        "plain", description="plain: prompts go to the pipeline as written (diffusers' own behaviour); weighted: "
                             "A1111/ComfyUI attention syntax, (word:1.3), (word), [word], \\( for a bracket, and prompts "
                             "longer than 77 tokens in chunks, encoded with compel (SD 1.x/2.x and SDXL)")
    params: dict[ParamName, Any] = Field(default_factory=empty_dict, description="experiment knobs: $params.NAME, ${params.NAME}")
    models: dict[ParamName, Annotated[str, Field(min_length=1)] | ModelEntry] = Field(
        default_factory=empty_dict, description="named models, used as $models.NAME: NAME: SOURCE (a hub id, a folder, a "
                                          ".safetensors file or tiny:NAME) or NAME: {source: SOURCE, ...}")
    nodes: dict[str, Any] = Field(..., description="node id -> node")
    sweep: Sweep | None = Field(None, description="run once per combination: grid: {PATH: [values]} multiplies, "
                                                  "zip: {PATH: [values]} pairs (one run folder each, one sweep folder)")


def workflow_schema_model(catalogue: Catalogue) -> type[BaseModel]:
    """The document model with `nodes` as the discriminated union of every declared node type."""
    union = Union[tuple(t.model for t in catalogue.values())]  # type: ignore[valid-type]
    node = Annotated[union, Field(discriminator="type")]
    node_id = Annotated[str, Field(pattern=NODE_ID.pattern, max_length=NODE_ID_MAX)]
    return create_model(
        "Workflow",
        __base__=WorkflowHeader,
        __doc__="A runner workflow (format v1).",
        nodes=(dict[node_id, node], Field(..., min_length=1, description="node id -> node")),  # type: ignore[valid-type]
    )


@dataclass
class Node:
    id: str
    type: NodeDeclaration
    fields: Fields

    @property
    def seed(self) -> int | str | None:
        """The node's `seed:` as written (a number, "random", or None: derived from the workflow seed), for node
        types that take one (the workflow format's seed rule: SPEC, Seeds); None for the others."""
        return getattr(self.fields, "seed", None)

    def links(self) -> list[tuple[Link, Accepts, tuple]]:
        found = []
        for value, accepts, path in iter_marked(self.fields, Accepts):
            if accepts.mapping:  # keyword arguments: any value may be a link (or a list of links)
                for key, item in value.items():
                    found.extend((link, accepts, path + (key,)) for link in links_in(item))
                continue
            for item in value if isinstance(value, list) else [value]:
                found.append((item, accepts, path))
        return found


@dataclass
class Workflow:
    path: Path
    name: str
    seed: int | str
    device: str
    dtype: str
    offload: str
    params: dict[str, Any]
    models: dict[str, ModelEntry]
    nodes: dict[str, Node]
    graph: Graph
    document: dict  # after overrides, before reference resolution: what the user's file now says
    overrides: list[str] = field(default_factory=list)
    prompt_syntax: str = "plain"  # how prompts are read: plain (as written) or weighted (A1111/ComfyUI syntax)
    source_map: SourceMap | None = None
    text: str = ""  # the YAML as read, before overrides
    allow_paths: tuple[Path, ...] = ()  # folders besides its own that its input files may come from (resolved)
    model_roots: tuple = ()  # the model folders bare model names are looked for in (runner.models.model_folders)
    # whether its own folder may be read (False: that folder was named by data, a PNG's text or a run's manifest)
    home_readable: bool = True
    # the opt-ins its entries asked for and the person running it allowed: option -> {model name: who allowed it}
    consents: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent

    def node_document(self, node_id: str) -> dict:
        return unresolve(field_values(self.nodes[node_id].fields, only_set=True))


def load_workflow(path: str | Path, overrides: list[str] | None = None, *, catalogue: Catalogue, text: str | None = None,
                  source: str | None = None, allow_paths=(), model_roots=(), model_check: ModelCheck | None = None,
                  require_files: bool = True, home_readable: bool = True, consent: Consent | None = None) -> Workflow:
    """Parse and fully validate a workflow file against the node types of `catalogue`. Raises WorkflowError listing every problem.

    With `text`, that YAML is used instead of the file's content (a workflow recovered from an image);
    `path` still decides the folder that relative paths start from, and `source` names it in messages.
    Input files must lie in that folder or in one of the folders `allow_paths` (the user's --allow-path) names, and
    (with `require_files`) exist. `model_check(entry, kind, base_dir, model_roots)` (handed in by the front, as the
    catalogue is) says what is wrong with each model a node uses where its files are on this machine.
    With `home_readable` False, `path`'s folder is where relative paths start but not a folder files may be read from
    (it was named by data: a PNG's text, a run's manifest); only `allow_paths` are.
    A model entry asking for an opt-in (allow_pickle, trust_remote_code) is refused unless `consent` (the person
    running the workflow: --allow-pickle NAME, ...) allows it for that entry.
    """
    path = Path(path)
    overrides = list(overrides or [])
    allowed, allow_problems = _allowed_folders(allow_paths)
    if text is None:
        text = read_yaml_text(path)
    raw, smap = load_yaml(text, source or str(path))
    if not isinstance(raw, dict):
        raise WorkflowError([Problem(smap.locate(()), (), "a workflow is a mapping with version, nodes, ...",
                                     "start the file with 'version: 1' and a 'nodes:' section")])
    document = apply_overrides(raw, overrides, smap)
    _check_counts(document, smap)
    problems: list[Problem] = list(allow_problems)

    header = _validate_header(document, smap, problems)
    param_origins: dict[tuple, str] = {}
    resolved, ref_problems = resolve_references(document, smap, param_origins)
    problems.extend(ref_problems)

    nodes: dict[str, Node] = {}
    typed_only: dict[str, NodeDeclaration] = {}  # nodes whose fields are invalid: links to them are still type-checked
    raw_nodes = document.get("nodes")
    if isinstance(raw_nodes, dict):
        if not raw_nodes:
            problems.append(Problem(smap.locate(("nodes",)), ("nodes",), "'nodes' is empty: a workflow needs at least one node",
                                    "add a node, e.g. a load_image and a save_image"))
        ref_paths = {problem.path for problem in ref_problems}
        for node_id, body in resolved["nodes"].items():
            node_problems: list[Problem] = []
            node = _validate_node(node_id, _with_workflow_options(body, header, catalogue), smap, node_problems, catalogue)
            # a bad reference is reported once: pydantic's complaint about the text left in its place is dropped
            problems.extend(problem for problem in node_problems if problem.path not in ref_paths)
            if isinstance(node, Node):
                nodes[node_id] = node
            elif node is not None:
                typed_only[node_id] = node

    graph = Graph({node_id: [] for node_id in nodes})
    for node in nodes.values():
        checked = set()
        for link, accepts, field_path in node.links():
            checked.add(link.path)
            if check_link(node.type, link, accepts, nodes, typed_only, raw_nodes or {}, smap, problems):
                if link.node not in graph.deps[node.id]:
                    graph.deps[node.id].append(link.node)
        for link in links_in(resolved["nodes"][node.id]):
            if link.path not in checked:
                problems.append(stray_link(node.type, link, smap))
    # nodes with invalid fields: still check their links, so one pass reports every problem
    reported = [problem.path for problem in problems if len(problem.path) > 2]
    for node_id, node_type in typed_only.items():
        for link in links_in(resolved["nodes"][node_id]):
            if any(link.path[: len(done)] == done for done in reported):
                continue
            accepts = accepts_at(node_type.fields, link.path[2:])
            if accepts is None:
                problems.append(stray_link(node_type, link, smap))
            else:
                check_link(node_type, link, accepts, nodes, typed_only, raw_nodes or {}, smap, problems)
    # each node type's own checks beyond its fields' types (call arguments against diffusers signatures, ...)
    context = CheckContext(_model_entries(document.get("models")), path.resolve().parent, tuple(model_roots),
                           {node_id: node.fields for node_id, node in nodes.items()},
                           header.prompt_syntax if header is not None else "plain")
    for node in nodes.values():
        if node.type.check is not None:
            for relative, message, hint in node.type.check(node.fields, context):
                where = ("nodes", node.id) + tuple(relative)
                problems.append(Problem(smap.locate(where), where, message, hint))
    problems.extend(_input_file_problems(nodes, context.base_dir, allowed, smap, require_files, home_readable))
    consent = consent or NO_CONSENT
    problems.extend(_opt_in_problems(context.models, consent, smap))
    if model_check is not None:
        problems.extend(_model_problems(nodes, context, document.get("models"), model_check, smap))
    problems.extend(_run_folder_clashes(nodes, smap))
    cycle = graph.find_cycle()
    if cycle:
        # the link that closes it: the last node's field reading the one before it (the cycle runs with the data)
        closing = next(((("nodes", cycle[-1]) + tuple(field), link) for link, _accepts, field in
                        nodes[cycle[-1]].links() if link.node == cycle[-2]), None) if cycle[-1] in nodes else None
        where = closing[0] if closing else ("nodes", cycle[0])
        problems.append(Problem(smap.locate(where), where,
                                "the nodes form a cycle: " + " -> ".join(cycle)
                                + (f"; this link (${closing[1].node}) closes it" if closing else ""),
                                "a node cannot depend on its own output; remove one of these links"))
    if problems:
        _name_param_origins(problems, param_origins, smap)
        raise WorkflowError(sorted(_dedupe(problems), key=lambda p: (p.location.source != str(path), p.location.line, p.location.column)))

    models = {name: (ModelEntry(source=entry) if isinstance(entry, str) else entry) for name, entry in header.models.items()}
    return Workflow(
        path=path,
        name=header.name or _default_name(path),
        seed=header.seed,
        device=header.device,
        dtype=header.dtype,
        offload=header.offload,
        params=header.params,
        models=models,
        nodes=nodes,
        graph=graph,
        document=document,
        overrides=overrides,
        prompt_syntax=header.prompt_syntax,
        source_map=smap,
        text=text,
        allow_paths=allowed,
        model_roots=tuple(model_roots),
        home_readable=home_readable,
        consents={option: {name: consent.given_by for name, entry in models.items() if getattr(entry, option)}
                  for option in OPT_INS},
    )


def _name_param_origins(problems: list[Problem], origins: dict[tuple, str], smap: SourceMap) -> None:
    """A problem with a value that came from `$params.NAME` names both places: where it is used (its location) and
    where the param is defined (or set with --set), and its fix says to change the param."""
    for problem in problems:
        origin = next((p for p in sorted(origins, key=len, reverse=True) if problem.path[: len(p)] == p), None)
        if origin is None:
            continue
        name = origins[origin]
        where = smap.locate(("params", name))
        given = f"set by {where}" if str(where).startswith("--set") else f"defined at {where}"
        problem.message += f" (from params.{name} {given})"
        fix = problem.hint or "give it a value this field takes"
        problem.hint = f"in params.{name} ({where}): {fix} (or give this field its own value instead of $params.{name})"


def _check_counts(document: dict, smap: SourceMap) -> None:
    """Refuse more than MAX_NODES nodes or MAX_PARAMS params before any of them is validated."""
    for section, limit, hint in (("nodes", MAX_NODES, "split the work into several workflows (a run's images can be the next one's inputs)"),
                                 ("params", MAX_PARAMS, "keep the params the nodes use; fixed values can be written in the nodes")):
        entries = document.get(section)
        if isinstance(entries, dict) and len(entries) > limit:
            raise WorkflowError([Problem(smap.locate((section,)), (section,),
                                         f"{len(entries):,} {section} is more than the limit of {limit:,} {section} in a workflow", hint)])


def _allowed_folders(allow_paths) -> tuple[tuple[Path, ...], list[Problem]]:
    """The --allow-path folders, resolved; each that is not an existing folder is a problem."""
    folders, problems = [], []
    for given in allow_paths or ():
        if "\0" in str(given):
            problems.append(Problem(Location("--allow-path"), (), f"the path {str(given)!r} contains a NUL character",
                                    "remove the NUL (\\0) from the path"))
            continue
        folder = Path(given).expanduser().resolve()
        if not folder.is_dir():
            what = "does not exist" if not folder.exists() else "is not a folder"
            problems.append(Problem(Location("--allow-path"), (), f"{given} {what}: --allow-path takes a folder",
                                    "name an existing folder holding the input files"))
        elif folder not in folders:
            folders.append(folder)
    return tuple(folders), problems


def _input_file_problems(nodes: dict[str, Node], base_dir: Path, allowed: tuple[Path, ...], smap: SourceMap,
                         require_files: bool = True, home_readable: bool = True) -> list[Problem]:
    """Every field marked InputFile: inside the workflow's folder or an allowed one, a regular file of a bounded size,
    and (with `require_files`) there. Checked by stat only: validation never opens an input."""
    problems = []
    for node in nodes.values():
        for written, _marker, relative in iter_marked(node.fields, InputFile):
            where = ("nodes", node.id) + tuple(relative)
            try:
                real = check_input(base_dir, written, allowed, home=home_readable)
            except InputRefused as refused:
                problems.append(Problem(smap.locate(where), where, str(refused), refused.hint))
                continue
            if require_files and not real.exists():
                problems.append(Problem(smap.locate(where), where, f"input file {written} does not exist (looked for {real})",
                                        "fix the path (relative to the workflow file's folder), or put the file there"))
    return problems


def _opt_in_problems(models: dict[str, ModelEntry], consent: Consent, smap: SourceMap) -> list[Problem]:
    """Each model entry that asks for an opt-in the person running the workflow did not allow for it."""
    problems = []
    for name, entry in models.items():
        for option, (flag, effect) in OPT_INS.items():
            if not getattr(entry, option) or consent.allows(option, name):
                continue
            path = ("models", name, option)
            message = f"model '{name}' asks for {option}: true (it {effect}); a workflow cannot turn that on by itself"
            if consent.refused:
                problems.append(Problem(smap.locate(path), path, f"{message}, and {consent.refused}",
                                        f"review the workflow as a file (runner extract IMAGE.png --out wf.yaml), then run "
                                        f"that file with {flag} {name} if you trust {entry.source}"))
            else:
                problems.append(Problem(smap.locate(path), path, message + ": the person running it must allow it",
                                        f"if you trust {entry.source}, add {flag} {name} to the command (Python: "
                                        f"Session({option}=['{name}'])); else remove '{option}' from the entry"))
    return problems


# (entry, the kind its field expects, the workflow's folder, the model folders) -> what is wrong with it
ModelCheck = Callable[[ModelEntry, str, Path, tuple], list[ModelFinding]]


def _model_problems(nodes: dict[str, Node], context: CheckContext, raw_models: Any, check: ModelCheck,
                    smap: SourceMap) -> list[Problem]:
    """What `check` finds in each model the nodes use, once per model, located at its entry under models: (its
    source, for a source at fault) or at the node's field for an inline source."""
    problems, seen = [], set()
    for node in nodes.values():
        for ref, marker, relative in iter_marked(node.fields, ModelField):
            name = ref[len(MODEL_REF_PREFIX):] if ref.startswith(MODEL_REF_PREFIX) else None
            if name is not None and name not in context.models:
                continue  # an unknown or invalid entry is reported already
            if (ref, marker.kind) in seen:
                continue
            seen.add((ref, marker.kind))
            entry = context.models[name] if name is not None else ModelEntry(source=ref)
            for finding in check(entry, marker.kind, context.base_dir, context.model_roots):
                hint = finding.hint
                if name is None:
                    path = ("nodes", node.id) + tuple(relative)
                    hint += f" {finding.inline_hint}" if finding.inline_hint else ""
                else:
                    written = raw_models.get(name) if isinstance(raw_models, dict) else None
                    field = finding.at if finding.at in ("source", "config", *PARTS) and isinstance(written, dict) else None
                    at = (tuple(finding.at.split(".", 1)) if finding.at.startswith("embeddings.")
                          and isinstance(written, dict) else ((field,) if field else ()))
                    path = ("models", name) + at
                problems.append(Problem(smap.locate(path), path, finding.message, hint))
    return problems


def _run_folder_clashes(nodes: dict[str, Node], smap: SourceMap) -> list[Problem]:
    """Two nodes that would write the same file into the run folder (the second would overwrite the first)."""
    problems, claimed = [], []  # (node id, RunFolderFile) in file order
    for node in nodes.values():
        writes = getattr(node.type, "writes", None)
        for file in writes(node.fields, node.id) if writes is not None else ():
            for other_id, other in claimed:
                if file.collides(other):
                    where = ("nodes", node.id) + tuple(file.field)
                    default = "" if file.field else " (the default name, from its id)"
                    problems.append(Problem(
                        smap.locate(where), where,
                        f"nodes '{other_id}' and '{node.id}' both write {file.name}{default} into the run folder "
                        f"('{other_id}' writes {other.shown()}): the second would overwrite the first",
                        f"give '{node.id}' or '{other_id}' another file name"))
                    break
            claimed.append((node.id, file))
    return problems


def _model_entries(raw: Any) -> dict[str, ModelEntry]:
    """The valid entries of `models:` (an invalid one is reported by the header's validation)."""
    entries = {}
    for name, value in raw.items() if isinstance(raw, dict) else ():
        try:
            entries[name] = ModelEntry(source=value) if isinstance(value, str) else ModelEntry.model_validate(value)
        except ValidationError:
            pass
    return entries


def _default_name(path: Path) -> str:
    import re

    return re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-")[:NAME_MAX] or "workflow"


def _validate_header(document: dict, smap: SourceMap, problems: list[Problem]) -> WorkflowHeader | None:
    try:
        return WorkflowHeader.model_validate(document)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, (), document, smap, "workflow", WorkflowHeader))
        return None


def _with_workflow_options(body: Any, header, catalogue: Catalogue) -> Any:
    """The node with the workflow's run-time options (RUNTIME_OPTIONS) it leaves out, where its type takes them."""
    if header is None or not isinstance(body, dict) or not isinstance(body.get("type"), str):
        return body
    node_type = catalogue.get(body["type"])
    if node_type is None:
        return body
    taken = node_type.model.model_fields
    added = {name: getattr(header, name) for name in RUNTIME_OPTIONS
             if getattr(header, name) is not None and name in taken and name not in body}
    return {**body, **added} if added else body


def _validate_node(node_id: str, body: Any, smap: SourceMap, problems: list[Problem],
                   catalogue: Catalogue) -> Node | NodeDeclaration | None:
    """The validated node; only its NodeDeclaration when its fields are invalid; None when even the type is unknown."""
    path = ("nodes", node_id)
    where = smap.locate(path)
    if not NODE_ID.match(node_id):
        problems.append(Problem(where, path, f"bad node id '{node_id}': ids are lowercase letters, digits and _ and start with a letter or _",
                                f"rename it, e.g. '{_suggest_id(node_id)}'"))
    elif node_id in RESERVED:
        problems.append(Problem(where, path, f"'{node_id}' is reserved and cannot be a node id", f"rename it, e.g. '{node_id}_node'"))
    elif len(node_id) > NODE_ID_MAX:
        problems.append(Problem(where, path, f"node id '{node_id[:24]}...' is {len(node_id)} characters long; ids are at most "
                                             f"{NODE_ID_MAX} (they name files such as NODE_ID.png)",
                                f"rename it, e.g. '{node_id[:NODE_ID_MAX // 4]}'"))
    if not isinstance(body, dict):
        problems.append(Problem(where, path, "a node is a mapping with a 'type' and its fields", "e.g. {type: load_image, path: in.png}"))
        return None
    type_name = body.get("type")
    if type_name is None:
        problems.append(Problem(where, path, "missing required field 'type'", "set type: to one of: " + ", ".join(sorted(catalogue))))
        return None
    node_type = catalogue.get(type_name) if isinstance(type_name, str) else None
    if node_type is None:
        problems.append(Problem(smap.locate(path + ("type",)), path + ("type",),
                                f"unknown node type '{type_name}'{did_you_mean(type_name, catalogue)}",
                                "run 'runner nodes' to list the node types"))
        return None
    try:
        fields = node_type.model.model_validate(body)
    except ValidationError as exc:
        found = pydantic_problems(exc, path, body, smap, f"{type_name} node", node_type.model)
        for problem in found:  # a field of other node types: say that this one does not take it, and why
            if len(problem.path) == 3 and problem.message.startswith("unknown field"):
                key = problem.path[2]
                owners = [name for name, other in catalogue.items() if name != type_name and key in
                          {info.alias or field for field, info in other.model.model_fields.items()}]
                why, fix = getattr(node_type.model, "not_taken", {}).get(key, ("", ""))
                if owners or why:
                    article = "an" if type_name[:1] in "aeiou" else "a"
                    problem.message = (f"{article} {type_name} node takes no '{key}'" + (f": {why}" if why else "")
                                       + (f" ('{key}' is a field of {', '.join(sorted(owners)[:6])}"
                                          f"{', ...' if len(owners) > 6 else ''})" if owners else ""))
                    problem.hint = fix or f"remove '{key}'; {problem.hint}"
        problems.extend(found)
        return node_type
    return Node(node_id, node_type, fields)


def _suggest_id(node_id: str) -> str:
    import re

    cleaned = re.sub(r"[^a-z0-9_]+", "_", node_id.lower())
    return cleaned if re.match(r"^[a-z_]", cleaned) else "n_" + cleaned


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for problem in problems:
        key = (str(problem.location), problem.path, problem.message)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out
