"""`runner runs`: list past runs, show one, diff two; `runner extract`: the workflow inside a PNG."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import CommandError
from ..language.errors import Location, Problem, WorkflowError
from ..language.yaml_source import load_yaml, read_yaml_text

# rich is imported by the print_* functions (`runner runs`) only: every run reads its recorded workflow from here for
# its report, and rich's modules are a good part of a cached run's start (bench/start_time.py)
if TYPE_CHECKING:
    from rich.console import Console


MAX_MANIFEST_BYTES = 64 << 20  # a manifest of 1,000 nodes is a few MB


def find_runs(out: Path) -> list[Path]:
    """Run folders under `out` (outputs/<name>/<run-id>/manifest.json), oldest first."""
    runs = [m.parent for m in [*out.glob("*/*/manifest.json"), *out.glob("*/sweep-*/*/manifest.json")]]
    return sorted(runs, key=_written)


def _written(run: Path) -> int:
    try:
        return (run / "manifest.json").stat().st_mtime_ns
    except OSError:  # removed meanwhile, or a link to nothing: listed first, then reported as damaged
        return 0


def run_id(run: Path) -> str:
    """A run's id as `runs list` shows it: RUN_ID, or SWEEP/NNN for a sweep's variant (NNN alone repeats in every sweep)."""
    return f"{run.parent.name}/{run.name}" if run.parent.name.startswith("sweep-") else run.name


def find_sweeps(out: Path) -> list[Path]:
    """Sweep folders under `out` (outputs/<name>/sweep-*/index.json), oldest first."""
    return sorted((index.parent for index in out.glob("*/sweep-*/index.json")), key=lambda sweep: (sweep / "index.json").stat().st_mtime_ns)


def resolve_run(ref: str, out: Path, command: str = "runner runs", sweeps: bool = False) -> Path:
    """A run folder given as a path, a run id (RUN_ID, SWEEP/NNN) or a unique prefix of one, with or without its
    NAME/ in front; 'latest' is the newest run. With `sweeps`, sweep folders (by path, id or prefix) count too."""
    path = Path(ref)
    if (path / "manifest.json").is_file() or (sweeps and (path / "index.json").is_file()):
        return path
    runs = find_runs(out)
    if ref == "latest":
        if runs:
            return runs[-1]
        raise CommandError([Problem(Location(command), (), f"'latest' names the newest run, and there is none under {out}",
                                     "run a workflow first, or give --out the folder the runs are in")])
    candidates = [(run_id(run), run) for run in runs]
    if sweeps:
        candidates += [(sweep.name, sweep) for sweep in find_sweeps(out)]
    named = [(f"{_workflow_folder(folder).name}/{identity}", identity, folder) for identity, folder in candidates]
    exact = [folder for full, identity, folder in named if ref in (identity, full)]
    matches = exact or [(identity, folder) for full, identity, folder in named if identity.startswith(ref) or full.startswith(ref)]
    if not exact and sweeps and "/" not in ref:  # a prefix of a sweep's id names the sweep, not each of its variants
        matches = [(identity, folder) for identity, folder in matches if "/" not in identity] or matches
    if not exact:
        matches = [folder for _identity, folder in matches]
    if len(matches) == 1:
        return matches[0]
    what, whats = ("run or sweep", "runs or sweeps") if sweeps else ("run", "runs")
    if matches:
        shown = ", ".join(_shown_id(folder) for folder in matches[:4]) + (", ..." if len(matches) > 4 else "")
        raise CommandError([Problem(Location(command), (), f"'{ref}' matches {len(matches)} {whats}: {shown}",
                                     "give more of the id, or NAME/RUN_ID (runner runs list shows the ids)")])
    variants = [identity for identity, _folder in candidates if identity.endswith("/" + ref)]
    if variants:  # a sweep's variant number alone: it repeats in every sweep
        shown = ", ".join(variants[-3:])
        raise CommandError([Problem(Location(command), (), f"'{ref}' is a sweep variant's number, which every sweep has",
                                     f"name the sweep too, as SWEEP/{ref}: e.g. {shown}")])
    raise CommandError([Problem(Location(command), (), f"'{ref}' is neither a {what} folder nor a {what} id under {out}",
                                 "run 'runner runs list' to see run ids (or give --out the folder the runs are in)")])


def _workflow_folder(folder: Path) -> Path:
    """outputs/NAME of a run folder, a sweep's variant or a sweep folder."""
    return folder.parent.parent if folder.parent.name.startswith("sweep-") else folder.parent


def _shown_id(folder: Path) -> str:
    return folder.name if (folder / "index.json").is_file() else run_id(folder)


def load_manifest(run: Path) -> dict:
    """A run's manifest.json; a truncated, unreadable or wrong-shape one is a located error (exit 2), never a traceback."""
    path = run / "manifest.json"
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_MANIFEST_BYTES + 1)
        if len(text) > MAX_MANIFEST_BYTES:
            raise ValueError(f"it is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
        data = json.loads(text.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        problem = f"cannot read it: {str(exc)[:200]}"
    else:
        problem = _manifest_shape(data)
        if problem is None:
            return data
    raise CommandError([Problem(Location(str(path)), (), f"damaged manifest: {problem}",
                                 "this run folder's record is broken: restore manifest.json or delete the folder")])


def _manifest_shape(data: Any) -> str | None:
    """What is wrong with the shape of a manifest, for every field that runs, reports and reproduce read (None: nothing).
    Fields may be missing (older manifests); what is there must be of its type."""
    if not isinstance(data, dict):
        return "not a JSON object"
    workflow = data.get("workflow")
    if not isinstance(workflow, dict) or not isinstance(workflow.get("name"), str):
        return "no workflow name"
    problem = (_typed(workflow, WORKFLOW_FIELDS, "workflow.") or _typed(data, TOP_FIELDS, "")
               or _mapping_of(data.get("models", {}), dict, "models"))
    if problem:
        return problem
    if not isinstance(data.get("status"), str):
        return "no status"
    nodes = data.get("nodes")
    if not isinstance(nodes, dict) or not all(isinstance(n, dict) and isinstance(n.get("type"), str)
                                              and isinstance(n.get("status"), str) for n in nodes.values()):
        return "no valid nodes section"
    for node_id, node in nodes.items():
        problem = _typed(node, NODE_FIELDS, f"nodes.{node_id}.")
        if problem:
            return problem
    for name, model in data.get("models", {}).items():
        problem = _typed(model, MODEL_FIELDS, f"models.{name}.")
        if problem:
            return problem
    return None


_NUMBER, _TEXT, _NONE = (int, float), (str,), (type(None),)
_TEXTS, _HASHES = ("list", str), ("mapping", str)
# field -> the types it may have: a tuple of types, ("list", T) a list of T, ("mapping", T) a dict of str -> T
WORKFLOW_FIELDS = {"path": _TEXT, "sha256": _TEXT, "overrides": _TEXTS}
TOP_FIELDS = {"run_id": _TEXT, "error": _TEXT + _NONE, "seconds": _NUMBER, "seed": (int,) + _NONE, "device": _TEXT,
              "dtype": _TEXT, "device_name": _TEXT + _NONE, "started": _TEXT, "command": _TEXTS, "cache_dir": _TEXT,
              "libraries": ("mapping", (str, type(None))), "counts": ("mapping", int), "determinism": (dict,),
              "allow_paths": _TEXTS, "model_paths": _TEXTS, "models_loaded": _TEXTS, "models_reused": _TEXTS,
              "reproduces": _TEXT}
NODE_FIELDS = {"seconds": _NUMBER + _NONE, "seed": (int,) + _NONE, "key": _TEXT, "error": _TEXT, "fix": _TEXT,
               "pipeline_class": _TEXT, "published": _TEXTS, "published_files": ("list", dict), "models": _HASHES,
               "input_files": _HASHES, "outputs": ("mapping", ("list", str)), "inputs": ("mapping", ("list", str)),
               "cache": _TEXT + _NONE}
MODEL_FIELDS = {"source": _TEXT, "identity": _TEXT, "files": _HASHES}


def _matches(value: Any, kind: Any) -> bool:
    if isinstance(kind, tuple) and kind and kind[0] in ("list", "mapping"):
        items = value if kind[0] == "list" else value.values() if isinstance(value, dict) else None
        if items is None or not isinstance(value, list if kind[0] == "list" else dict):
            return False
        return all(_matches(item, kind[1]) for item in items)
    types = kind if isinstance(kind, tuple) else (kind,)
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def _typed(record: dict, fields: dict, prefix: str) -> str | None:
    for name, kind in fields.items():
        if name in record and not _matches(record[name], kind):
            return f"'{prefix}{name}' is {type(record[name]).__name__} {str(record[name])[:40]!r}, not what runner writes there"
    return None


def _mapping_of(value: Any, kind: type, where: str) -> str | None:
    return None if _matches(value, ("mapping", kind)) else f"'{where}' is not a mapping of records"


def print_list(console: Console, out: Path) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"runs under {out}")
    for column in ("workflow", "run id", "status", "ran", "cached", "seconds"):
        table.add_column(column, justify="right" if column in ("ran", "cached", "seconds") else "left", overflow="fold")
    for run in find_runs(out):
        try:
            data = load_manifest(run)
        except CommandError as damaged:
            Console(stderr=True, highlight=False).print(f"warning: skipped {escape(str(run))}: {escape(damaged.problems[0].message)}")
            continue
        counts = data.get("counts", {}) if isinstance(data.get("counts"), dict) else {}
        table.add_row(data["workflow"]["name"], run_id(run), data["status"], str(counts.get("ran", 0)),
                      str(counts.get("cached", 0)), f"{data.get('seconds', 0):.2f}")
    console.print(table)


def print_show(console: Console, run: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    data = load_manifest(run)
    console.print(f"[bold]{escape(data['workflow']['name'])}[/] run {escape(run_id(run))}: {data['status']}"
                  + (f" ({escape(data['error'])})" if data.get("error") else ""))
    console.print(f"folder {run}  seed {data['seed']}  device {data['device']}  dtype {data['dtype']}  "
                  f"{data.get('seconds', 0):.2f} s")
    if data["workflow"].get("overrides"):
        console.print("overrides: " + escape(" ".join(f"--set {o}" for o in data["workflow"]["overrides"])))
    if data.get("command"):
        console.print("command: " + escape(shlex.join(data["command"])), soft_wrap=True)
    table = Table()
    for column in ("node", "type", "status", "seconds", "seed", "pipeline", "published"):
        table.add_column(column, overflow="fold")
    for node_id, node in data["nodes"].items():
        table.add_row(node_id, node["type"], node["status"], "" if node.get("seconds") is None else f"{node['seconds']:.2f}",
                      "" if node.get("seed") is None else str(node["seed"]), node.get("pipeline_class", ""),
                      ", ".join(node.get("published", [])))
    console.print(table)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def recorded_workflow(run: Path) -> Any:
    """The workflow.yaml a run recorded, read like any workflow (limits, located errors: a damaged one is exit 2, not a traceback)."""
    path = run / "workflow.yaml"
    return load_yaml(read_yaml_text(path), str(path))[0]


def run_differences(a: Path, b: Path) -> list[tuple[str, str, Any, Any]]:
    """(section, what, in A, in B) for every difference in settings, models, versions and outputs."""
    manifest_a, manifest_b = load_manifest(a), load_manifest(b)
    rows: list[tuple[str, str, Any, Any]] = []

    def compare(section: str, left: dict, right: dict) -> None:
        for key in sorted(set(left) | set(right)):
            if left.get(key) != right.get(key):
                rows.append((section, key, left.get(key, "-"), right.get(key, "-")))

    workflow_a = _flatten(recorded_workflow(a))
    workflow_b = _flatten(recorded_workflow(b))
    compare("workflow", workflow_a, workflow_b)
    models = lambda m: {f"{n}: {ref}": ident for n, node in m["nodes"].items() for ref, ident in node.get("models", {}).items()}  # noqa: E731
    compare("models", models(manifest_a), models(manifest_b))
    compare("versions", manifest_a.get("libraries", {}), manifest_b.get("libraries", {}))
    compare("run", {k: manifest_a.get(k) for k in ("device", "dtype", "seed")}, {k: manifest_b.get(k) for k in ("device", "dtype", "seed")})
    outputs = lambda m: {f"{n}.{out}": hashes[0][:16] if len(hashes) == 1 else [h[:16] for h in hashes]  # noqa: E731
                         for n, node in m["nodes"].items() for out, hashes in node.get("outputs", {}).items()}
    compare("outputs", outputs(manifest_a), outputs(manifest_b))
    return rows


def print_diff(console: Console, a: Path, b: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    rows = run_differences(a, b)
    left, right = run_id(a), run_id(b)
    if not rows:
        console.print(f"no differences between {escape(left)} and {escape(right)}")
        return
    table = Table(title=f"{escape(left)}  vs  {escape(right)}")
    for column in ("section", "what", left, right):
        table.add_column(column, overflow="fold")
    for section, what, left, right in rows:
        table.add_row(section, escape(what), escape(str(left)), escape(str(right)))
    console.print(table)


def embedded_workflow(image: Path) -> tuple[str, str | None]:
    """(workflow YAML, path of the original workflow file) from a PNG that runner saved."""
    from PIL import Image

    try:
        with Image.open(image) as opened:
            texts = dict(getattr(opened, "text", {}))
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: ValueError for a text chunk that decompresses too large
        raise WorkflowError([Problem(Location(str(image)), (), f"cannot read image: {exc}",
                                     "use a PNG that 'runner run' saved with save_image")]) from None
    if "runner:workflow" not in texts:
        raise WorkflowError([Problem(Location(str(image)), (), "this PNG holds no runner workflow (no 'runner:workflow' text chunk)",
                                     "use an image that 'runner run' saved with save_image")])
    return texts["runner:workflow"], texts.get("runner:workflow_path")
