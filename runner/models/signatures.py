"""What diffusers pipelines take, known without importing diffusers: an index read from its source.

`validate` checks `pipeline.call` and `pipeline_kwargs` keys against the
`__call__` signature of the pipeline class that will run, and the `pipeline`
node's `class` against the classes diffusers exports. Importing diffusers takes
seconds (it pulls in torch), so instead its installed source is read:

- every `class` under diffusers/pipelines/: its bases and the parameter names of
  its own `__call__` (a class without one inherits its bases', looked up by
  name in the index);
- the names diffusers' top-level `__init__` exports (`_import_structure`): the
  allow-list of the `pipeline` node;
- the AutoPipeline task mappings of pipelines/auto_pipeline.py, so the class
  that `AutoPipelineFor*.from_pipe` makes of a checkpoint is known from the
  checkpoint's `_class_name` alone.

Locating classes and `__call__` definitions is done with regular expressions;
each signature found is then parsed with `ast` (a file whose signatures do not
parse that way is parsed whole). That keeps a build near a third of a second
instead of three. The index is cached as JSON under the cache folder, one file
per diffusers version, and held in memory once read.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..core.atomic import write_atomic

INDEX_FORMAT = 2  # 2: parameter defaults

# AutoPipeline class -> the mapping its `from_pipe` consults (see diffusers' auto_pipeline.py)
AUTOPIPELINE_MAPPINGS = {
    "AutoPipelineForText2Image": "AUTO_TEXT2IMAGE_PIPELINES_MAPPING",
    "AutoPipelineForImage2Image": "AUTO_IMAGE2IMAGE_PIPELINES_MAPPING",
    "AutoPipelineForInpainting": "AUTO_INPAINT_PIPELINES_MAPPING",
}
# how `from_pipe(..., controlnet=...)` renames the task class (see diffusers' auto_pipeline.py)
_CONTROLNET_SUFFIX = {
    "AUTO_TEXT2IMAGE_PIPELINES_MAPPING": "Pipeline",
    "AUTO_IMAGE2IMAGE_PIPELINES_MAPPING": "Img2ImgPipeline",
    "AUTO_INPAINT_PIPELINES_MAPPING": "InpaintPipeline",
}


@dataclass(frozen=True)
class CallSignature:
    parameters: tuple[str, ...]  # named parameters of __call__, without self
    var_keyword: bool  # it also takes **kwargs (in diffusers: swallowed deprecated arguments, so not counted as "any")
    defined_in: str  # the class whose __call__ this is (itself or a base)
    defaults: dict  # parameter -> its default, for defaults written as literals (numbers, strings, None, tuples)


class PipelineIndex:
    def __init__(self, data: dict):
        self.version: str = data["diffusers"]
        self.stamp: list = data["stamp"]
        self.signatures = {name: CallSignature(tuple(s["parameters"]), s["var_keyword"], s["defined_in"], s.get("defaults", {}))
                           for name, s in data["signatures"].items()}
        # exported by `import diffusers` and callable: what the `pipeline` node may name
        self.allowed: frozenset[str] = frozenset(name for name in data["exported"] if name in self.signatures)
        self.mappings: dict[str, dict[str, str]] = data["mappings"]
        self.supported: list[str] = data["supported"]

    def signature(self, class_name: str) -> CallSignature | None:
        return self.signatures.get(class_name)

    def task_class(self, checkpoint_class: str, autopipeline: str | None, controlnet: bool = False,
                   pag: bool = False) -> str | None:
        """The class `autopipeline.from_pipe` makes of a checkpoint (None: the checkpoint's own class), with a
        ControlNet, with `enable_pag=True` (as diffusers derives them: ControlNet first, then PAG); None if it has
        none."""
        if autopipeline is None:
            return checkpoint_class if checkpoint_class in self.signatures else None
        mapping = AUTOPIPELINE_MAPPINGS.get(autopipeline)
        if mapping is None:
            return None
        found = self._get_task_class(mapping, checkpoint_class)
        if found is not None and controlnet:
            suffix = _CONTROLNET_SUFFIX[mapping]
            if mapping != "AUTO_INPAINT_PIPELINES_MAPPING" and "PAG" in found:
                suffix = "PAG" + suffix
            found = self._get_task_class(mapping, found.replace("ControlNet", "").replace(suffix, "ControlNet" + suffix))
        if found is not None and pag:  # each AutoPipeline's own renaming (diffusers' auto_pipeline.py)
            suffix = _CONTROLNET_SUFFIX[mapping]
            found = self._get_task_class(mapping, found.replace("PAG", "").replace(suffix, "PAG" + suffix))
        return found

    def mapping_classes(self, autopipeline: str | None) -> list[str]:
        """Every pipeline class the AutoPipeline's task mapping derives (for any checkpoint diffusers maps), in its
        order; [] for none."""
        mapping = self.mappings.get(AUTOPIPELINE_MAPPINGS.get(autopipeline or "", ""), {})
        return [name for name in mapping.values() if name in self.signatures]

    def _get_task_class(self, mapping: str, class_name: str) -> str | None:
        family = next((family for name in self.supported for family, cls in self.mappings.get(name, {}).items()
                       if cls == class_name), None)
        return self.mappings.get(mapping, {}).get(family) if family is not None else None


_MEMORY: dict[str, PipelineIndex] = {}


def pipeline_index(cache_dir: Path | None = None) -> PipelineIndex | None:
    """The index for the installed diffusers (built on first use, then read from the cache); None without diffusers."""
    root = diffusers_root()
    if root is None:
        return None
    version = diffusers_version(root)
    stamp = _stamp(root)
    if version in _MEMORY and _MEMORY[version].stamp == stamp:
        return _MEMORY[version]
    if cache_dir is None:
        from ..core.paths import default_cache_dir

        cache_dir = default_cache_dir()
    path = Path(cache_dir) / "signatures" / f"diffusers-{_safe(version)}.json"
    data = _read(path, version, stamp)
    if data is None:
        data = build_index(root, version, stamp)
        _write(path, data)
    index = PipelineIndex(data)
    _MEMORY[version] = index
    return index


def diffusers_root() -> Path | None:
    try:
        spec = find_spec("diffusers")  # finds the package without importing it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.M)


def diffusers_version(root: Path) -> str:
    """From `__version__` in its __init__ (importlib.metadata would scan every installed distribution: ~0.1 s)."""
    try:
        found = _VERSION.search((root / "__init__.py").read_text(encoding="utf-8"))
    except OSError:
        found = None
    return found.group(1) if found else "unknown"


def _stamp(root: Path) -> list:
    """Where this diffusers lives and when its package files last changed: an editable install changes without a new version."""
    stats = [(root / name).stat() for name in ("__init__.py", "pipelines/__init__.py", "pipelines/auto_pipeline.py")
             if (root / name).exists()]
    return [str(root)] + [[s.st_size, s.st_mtime_ns] for s in stats]


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", version)


def _read(path: Path, version: str, stamp: list) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("format") != INDEX_FORMAT or data.get("diffusers") != version or data.get("stamp") != stamp:
        return None
    return data


def _write(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data, separators=(",", ":")))
    except OSError:
        pass  # a read-only cache folder: the index is still kept in memory for this process


# ------------------------------------------------------------------ building
def build_index(root: Path, version: str = "", stamp: list | None = None) -> dict:
    classes: dict[str, dict] = {}
    for path in sorted((root / "pipelines").rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if "class " not in text:
            continue
        try:
            found = _scan_classes(text)
        except (SyntaxError, ValueError, IndexError):
            try:
                found = _parse_classes(text)
            except SyntaxError:
                continue
        for name, info in found.items():
            classes.setdefault(name, info)
    signatures = {}
    for name in classes:
        if name.endswith("Pipeline"):
            resolved = _resolve_call(name, classes, set())
            if resolved is not None:
                signatures[name] = resolved
    mappings, supported = _auto_mappings(root / "pipelines" / "auto_pipeline.py")
    return {
        "format": INDEX_FORMAT,
        "diffusers": version,
        "stamp": stamp or [],
        "signatures": signatures,
        "exported": sorted(_exported_names(root / "__init__.py") & set(signatures)),
        "mappings": mappings,
        "supported": supported,
    }


def _resolve_call(name: str, classes: dict[str, dict], seen: set) -> dict | None:
    """The class's own __call__, else the first base's (depth first, left to right), by name within the index."""
    info = classes.get(name)
    if info is None or name in seen:
        return None
    seen.add(name)
    if info["call"] is not None:
        return {"parameters": info["call"], "var_keyword": info["var_keyword"], "defined_in": name,
                "defaults": info.get("defaults", {})}
    for base in info["bases"]:
        found = _resolve_call(base, classes, seen)
        if found is not None:
            return found
    return None


_CLASS = re.compile(r"^class\s+(\w+)\s*(?:\(([^)]*)\))?\s*:", re.M)
_TOP_LEVEL = re.compile(r"^(?:class|def|async\s+def)\s", re.M)
_CALL = re.compile(r"^[ \t]+(?:async\s+)?def\s+__call__\s*\(", re.M)


def _scan_classes(text: str) -> dict[str, dict]:
    """Top-level classes: bases and the __call__ parameters, each signature cut out and parsed with ast."""
    starts = [m.start() for m in _TOP_LEVEL.finditer(text)] + [len(text)]
    found = {}
    for match in _CLASS.finditer(text):
        end = next(position for position in starts if position > match.start())
        body = text[match.end():end]
        bases = [part.strip().split(".")[-1] for part in (match.group(2) or "").split(",") if part.strip()]
        if any(not re.fullmatch(r"\w+", base) for base in bases):
            raise ValueError("bases beyond plain names: parse the file")
        call = _CALL.search(body)
        parameters, var_keyword, defaults = None, False, {}
        if call is not None:
            function = ast.parse(_signature_text(body[call.start():]).strip() + " pass").body[0]
            parameters, var_keyword = _parameters(function)
            defaults = _defaults(function)
        found[match.group(1)] = {"bases": bases, "call": parameters, "var_keyword": var_keyword, "defaults": defaults}
    return found


def _signature_text(text: str) -> str:
    """`def __call__(...) -> X:` up to its colon (brackets balanced; a bracket inside a string fails ast, then the file is parsed)."""
    depth, index = 0, text.index("(")
    while True:
        char = text[index]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                break
        index += 1
    return text[: text.index(":", index) + 1]


def _parse_classes(text: str) -> dict[str, dict]:
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef):
            call = next((item for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and item.name == "__call__"), None)
            parameters, var_keyword = _parameters(call) if call is not None else (None, False)
            bases = [base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
                     for base in node.bases]
            found[node.name] = {"bases": [b for b in bases if b], "call": parameters, "var_keyword": var_keyword,
                                "defaults": _defaults(call) if call is not None else {}}
    return found


def _parameters(function) -> tuple[list[str], bool]:
    arguments = function.args
    names = [a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs]
    if names and names[0] == "self":
        names = names[1:]
    return names, arguments.kwarg is not None


def _defaults(function) -> dict:
    """Parameter -> default for the defaults that are literals; others (calls, names) are left out."""
    arguments = function.args
    positional = arguments.posonlyargs + arguments.args
    pairs = list(zip(positional[len(positional) - len(arguments.defaults):], arguments.defaults))
    pairs += [(a, d) for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults) if d is not None]
    found = {}
    for argument, node in pairs:
        try:
            value = ast.literal_eval(node)
        except (ValueError, SyntaxError, TypeError):
            continue
        if isinstance(value, (int, float, str, bool, type(None), tuple, list)):
            found[argument.arg] = list(value) if isinstance(value, tuple) else value
    return found


def _exported_names(init: Path) -> set[str]:
    """Every name listed in diffusers' top-level `_import_structure` (assignments, .append and .extend)."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Expr)) and _mentions(node, "_import_structure"):
            for item in ast.walk(node):
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    names.add(item.value)
    return names


def _mentions(node, name: str) -> bool:
    return any(isinstance(item, ast.Name) and item.id == name for item in ast.walk(node))


def _auto_mappings(path: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """{MAPPING_NAME: {family: class name}} and the SUPPORTED_TASKS_MAPPINGS order, from auto_pipeline.py."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return {}, []
    mappings: dict[str, dict[str, str]] = {}
    supported: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id.endswith("_MAPPING") and isinstance(node.value, ast.Call):
            entries = node.value.args[0] if node.value.args else None
            if isinstance(entries, ast.List):
                mappings[target.id] = {
                    item.elts[0].value: item.elts[1].id for item in entries.elts
                    if isinstance(item, ast.Tuple) and len(item.elts) == 2 and isinstance(item.elts[0], ast.Constant)
                    and isinstance(item.elts[1], ast.Name)
                }
        elif isinstance(target, ast.Name) and target.id == "SUPPORTED_TASKS_MAPPINGS" and isinstance(node.value, ast.List):
            supported = [item.id for item in node.value.elts if isinstance(item, ast.Name)]
        elif (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id.endswith("_MAPPING")
              and isinstance(target.slice, ast.Constant) and isinstance(node.value, ast.Name)):
            # optional families added after the fact (kolors, when sentencepiece is installed)
            mappings.setdefault(target.value.id, {})[target.slice.value] = node.value.id
    return mappings, supported


# ------------------------------------------------------ checkpoints on disk
def checkpoint_class(source) -> str | None:
    """The `_class_name` a checkpoint's model_index.json names, read without loading anything; None when unknown here.

    tiny: from the tiny spec (nothing is built); local folders and cached hub snapshots: their model_index.json
    (a folder holding prior/ and decoder/, as Kandinsky 2.2, counts by its decoder); single files and hub models
    that are not cached: None.
    """
    subfolder = source.entry.subfolder
    if source.kind == "tiny":
        from .tiny import tiny_pipeline_classes

        try:
            classes = tiny_pipeline_classes(source.location)
        except ValueError:
            return None
        if subfolder:
            return classes.get(subfolder)
        return classes.get("") or classes.get("decoder")
    if source.kind == "folder":
        folder: Path | None = Path(source.location)
    elif source.kind == "hub":
        from .hub_cache import hf_hub_cache, resolve_hub_commit

        commit = resolve_hub_commit(source.location, source.entry.revision or "main")
        folder = hf_hub_cache() / ("models--" + source.location.replace("/", "--")) / "snapshots" / commit if commit else None
    else:
        return None
    if folder is None:
        return None
    if subfolder:
        folder = folder / subfolder
    elif not (folder / "model_index.json").is_file() and (folder / "prior").is_dir() and (folder / "decoder").is_dir():
        folder = folder / "decoder"
    try:
        name = json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None
