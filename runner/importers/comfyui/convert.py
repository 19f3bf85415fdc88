"""A ComfyUI graph as a runner workflow file (what `runner import comfyui` writes).

Reads the API-format prompt (what ComfyUI's "Save (API)" writes, alone or inside a request wrapper such as
`{"prompt": ...}` or `{"input": {"workflow": ...}}`, or the `prompt` text chunk of a PNG that ComfyUI saved), maps
it with the graph module, and makes plain workflow YAML with comments naming where each node came from. The YAML is
validated before anything is written: a refused or invalid import leaves no file behind.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from ...language.errors import Location, Problem, WorkflowError
from .graph import (
    ComfyNode,
    GraphMapping,
    Imported,
    Use,
    check_graph,
    node_order,
    save_names_unique,
)

MAX_SOURCE_BYTES = 32 * 1024 * 1024  # ComfyUI prompts are kilobytes; a bigger file is not one
MAX_NODES = 10_000
WRAPPER_KEYS = ("prompt", "workflow", "input", "data")  # where request bodies and job files keep the prompt
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UI_HINT = ("that is ComfyUI's UI format (the graph as drawn: nodes and links arrays); runner imports the API format: "
           "in ComfyUI enable the dev mode options in Settings and use Save (API) (Workflow > Export (API) in newer "
           "versions)")


# ----------------------------------------------------------------- reading
def read_prompt(source: Path) -> tuple[dict, str]:
    """(the API-format prompt, where in the file it was) from a JSON file or a PNG that ComfyUI saved."""
    where = Location(str(source))
    try:
        size = source.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise WorkflowError([Problem(where, (), f"the file is {size / 1e6:.0f} MB; a ComfyUI graph is at most "
                                                     f"{MAX_SOURCE_BYTES >> 20} MiB here", "pass the API-format JSON")])
        with open(source, "rb") as handle:
            data = handle.read(MAX_SOURCE_BYTES + 1)
    except FileNotFoundError:
        raise WorkflowError([Problem(where, (), "no such file", "pass a ComfyUI API-format .json or a PNG ComfyUI saved")]) from None
    except OSError as exc:
        raise WorkflowError([Problem(where, (), f"cannot read it: {exc.strerror or exc}")]) from None
    if data.startswith(PNG_SIGNATURE):
        text, found_in = _png_prompt(source, data), "its 'prompt' text chunk"
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise WorkflowError([Problem(where, (), "neither a PNG nor UTF-8 JSON text",
                                         "pass the .json that Save (API) wrote, or a PNG that ComfyUI saved")]) from None
        found_in = ""
    document = _json(text, where)
    prompt, path = find_prompt(document, where)
    return prompt, ", ".join(part for part in (found_in, f"under {path}" if path else "") if part)


def _png_prompt(source: Path, data: bytes) -> str:
    import io

    from PIL import Image

    where = Location(str(source))
    try:
        with Image.open(io.BytesIO(data)) as image:
            texts = dict(getattr(image, "text", {}))
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: ValueError for a text chunk that decompresses too large
        raise WorkflowError([Problem(where, (), f"cannot read the PNG: {exc}")]) from None
    if "prompt" in texts:
        return texts["prompt"]
    if "workflow" in texts:
        raise WorkflowError([Problem(where, (), "the PNG holds only the UI-format 'workflow' chunk, no API 'prompt' chunk: "
                                     + UI_HINT)])
    if "runner:workflow" in texts:
        raise WorkflowError([Problem(where, (), "this PNG was saved by runner, not ComfyUI",
                                     "run it directly (runner run IMAGE.png) or get its workflow with runner extract")])
    raise WorkflowError([Problem(where, (), "the PNG holds no ComfyUI graph (no 'prompt' text chunk)",
                                 "use a PNG that ComfyUI's SaveImage wrote (with metadata), or the graph's API JSON")])


def _json(text: str, where: Location) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError([Problem(Location(where.source, exc.lineno, exc.colno), (), f"not valid JSON: {exc.msg}",
                                     "pass the .json that ComfyUI's Save (API) wrote")]) from None
    except RecursionError:
        raise WorkflowError([Problem(where, (), "the JSON is nested too deeply to be a ComfyUI graph")]) from None
    except ValueError:  # Python reads no integer of more than 4,300 digits (sys.get_int_max_str_digits)
        number = re.search(r"\d{%d,}" % (sys.get_int_max_str_digits() + 1), text)
        if number is None:
            raise
        line = text.count("\n", 0, number.start()) + 1
        column = number.start() - text.rfind("\n", 0, number.start())
        raise WorkflowError([Problem(Location(where.source, line, column), (),
                                     f"a number of {len(number[0]):,} digits, more than a ComfyUI graph holds",
                                     "pass the .json that ComfyUI's Save (API) wrote")]) from None


def find_prompt(document: Any, where: Location, path: str = "", depth: int = 0) -> tuple[dict, str]:
    """The API-format prompt: the mapping whose values are {class_type, inputs} nodes, at the top or inside a
    wrapper key (a request body's "prompt", a job's "input" -> "workflow", ...; a JSON string there is parsed too)."""
    if isinstance(document, dict):
        if isinstance(document.get("nodes"), list) and isinstance(document.get("links"), list):
            raise WorkflowError([Problem(where, (), (f"{path}: " if path else "") + UI_HINT)])
        if any(isinstance(value, dict) and "class_type" in value for value in document.values()):
            return document, path
        if depth < 4:
            for key in WRAPPER_KEYS:
                inner = document.get(key)
                if isinstance(inner, str) and inner.lstrip().startswith("{"):
                    inner = _json(inner, where)
                if isinstance(inner, (dict, list)):
                    try:
                        return find_prompt(inner, where, f"{path}.{key}" if path else key, depth + 1)
                    except WorkflowError as refused:
                        if "UI format" in str(refused):
                            raise
    raise WorkflowError([Problem(where, (), "no ComfyUI nodes in it: an API-format prompt maps node ids to "
                                            "{\"class_type\": ..., \"inputs\": {...}}",
                                 "export the graph with Save (API) in ComfyUI")])


def comfy_nodes(prompt: dict, where: Location) -> tuple[dict[str, ComfyNode], list[str]]:
    """The prompt's nodes, and the top-level keys that hold no node (skipped, and named in the output)."""
    nodes: dict[str, ComfyNode] = {}
    skipped: list[str] = []
    problems: list[Problem] = []
    if len(prompt) > MAX_NODES:
        raise WorkflowError([Problem(where, (), f"{len(prompt):,} entries: more than {MAX_NODES:,} nodes")])
    for key, value in prompt.items():
        if isinstance(value, dict) and "class_type" in value:
            class_type, inputs = value["class_type"], value.get("inputs", {})
            if not isinstance(class_type, str) or not isinstance(inputs, dict):
                problems.append(Problem(where, (), f"node {key}: class_type must be text and inputs a mapping"))
                continue
            nodes[str(key)] = ComfyNode(str(key), class_type, inputs)
        elif isinstance(value, dict) and "inputs" in value:
            problems.append(Problem(where, (), f"node {key} has inputs but no class_type",
                                    "export the graph again with Save (API)"))
        else:
            skipped.append(str(key))
    if problems:
        raise WorkflowError(problems)
    return nodes, skipped


# -------------------------------------------------------------- converting
def convert(prompt: dict, source: Path, out_dir: Path, found_in: str, name: str) -> tuple[str, Imported]:
    """(workflow YAML, what was imported); WorkflowError listing every node that cannot be mapped."""
    where = Location(str(source))
    nodes, skipped = comfy_nodes(prompt, where)
    refused = check_graph(nodes)
    if not refused:
        mapping = GraphMapping(nodes, lambda image: image_path(image, source.resolve().parent, out_dir))
        refused = mapping.run()
    if refused:
        raise WorkflowError([Problem(where, (), r.message, r.hint) for r in refused])
    imported = mapping.result(skipped)
    save_names_unique(imported)
    return render(imported, source, found_in, name), imported


def image_path(comfy_name: str, source_dir: Path, out_dir: Path) -> str:
    """A LoadImage file as load_image's path, relative to the output file: the file beside the ComfyUI file when it
    is there, else the name as ComfyUI gave it (its input folder), to be put beside the output."""
    candidate = source_dir / comfy_name
    if candidate.is_file():
        return Path(os.path.relpath(candidate.resolve(), out_dir)).as_posix()
    return comfy_name


def workflow_name(path: Path) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "_", path.stem.lower()).strip("_")[:100]
    return name or "comfyui"


# ---------------------------------------------------------------- writing
def render(imported: Imported, source: Path, found_in: str, name: str) -> str:
    ids = {node.key: node_id for node_id, node in imported.nodes}

    def plain(value: Any) -> Any:
        if isinstance(value, Use):
            return f"${ids[value.key]}" + (f".{value.output}" if value.output else "")
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    def dump(data: dict, indent: int) -> list[str]:
        text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)
        return [" " * indent + line if line else line for line in text.splitlines()]

    example = next(iter(imported.models), None)
    lines = [
        f"# Imported by `runner import comfyui` from the ComfyUI graph {source.name}"
        + (f" ({found_in})." if found_in else "."),
        "# Results differ from ComfyUI's: samplers, schedules and noise are diffusers' (one seed gives other noise),",
        "# and (word:1.2) weights weigh as in ComfyUI but are encoded by compel; see docs/how-to/comfyui-import.md.",
    ]
    if example:
        lines += ["# Models are named after their files; runner looks bare file names up in RUNNER_MODEL_PATHS, or point",
                  f"# a name elsewhere: runner run THIS.yaml --set models.{example}=HUB_ID_OR_PATH"]
    if imported.skipped_keys:
        lines.append("# Skipped top-level keys (no ComfyUI node): " + ", ".join(imported.skipped_keys))
    if imported.unused:
        lines.append("# Not imported (no SaveImage needs them, so ComfyUI does not run them): " + ", ".join(imported.unused))
    lines += ["version: 1", f"name: {name}"]
    lines += dump({"description": f"Imported from the ComfyUI graph {source.name}"}, 0)
    lines.append("prompt_syntax: weighted  # as ComfyUI reads every prompt: (word:1.2) weighs a word")
    if imported.models:  # a graph of LoadImage, ImageScale and SaveImage loads none
        lines.append("")
        lines.append("models:")
        for model, model_source in imported.models.items():
            lines += [f"  # ComfyUI {imported.model_kinds[model]}"] + dump({model: model_source}, 2)
    lines.append("")
    lines.append("nodes:")
    for index, (node_id, node) in enumerate(imported.nodes):
        if index:
            lines.append("")
        lines.append("  # ComfyUI " + ", ".join(_unique(node.comfy)))
        lines += [f"  # note: {note}" for note in node.notes]
        lines += dump({node_id: plain(node.body)}, 2)
    return "\n".join(lines) + "\n"


def _unique(items: list[str]) -> list[str]:
    return sorted(dict.fromkeys(items), key=lambda item: node_order(item.split(" ", 1)[0]))


class _Dumper(yaml.SafeDumper):
    """Short lists of numbers in flow style ([64, 64]); multi-line prompts as literal blocks."""


def _list(dumper, data):
    flow = len(data) <= 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True if flow else None)


def _text(dumper, data):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(list, _list)
_Dumper.add_representer(str, _text)


# -------------------------------------------------------------- validating
def validate(text: str, imported: Imported, out: Path | None, out_dir: Path, source: Path) -> None:
    """The YAML must load as a valid workflow where it will be written (images found outside that folder are
    allowed, as --allow-path would); a failure here is a bug in the importer, shown with the YAML's problems."""
    from ...engine.loading import load_workflow

    target = out if out is not None else out_dir / f"{source.stem}.yaml"
    outside = sorted({str((out_dir / path).resolve().parent) for path, _name in imported.images
                      if not (out_dir / path).resolve().is_relative_to(out_dir)})
    try:
        load_workflow(target, text=text, source=f"{target} (imported)", allow_paths=[Path(p) for p in outside],
                      check_files=False)  # its models and images are found where it runs
    except WorkflowError as exc:
        exc.problems.append(Problem(Location(str(source)), (), "the imported workflow does not validate (shown above); "
                                    "nothing was written", "this is a bug in runner's ComfyUI importer: please report "
                                                           "it with the graph"))
        raise
    if outside:
        print(f"note: load_image reads files outside {out_dir}: run it with "
              + " ".join(f"--allow-path {folder}" for folder in outside), file=sys.stderr)
