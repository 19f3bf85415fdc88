"""The house rules, checked on the source: layers import only the ones below them, no module imports another in a
circle, and nothing outside a node's own declaration (and the ComfyUI importer, which maps another tool's nodes onto
runner's) switches on a node type's name.

Reads the source only (ast); a clean clone runs every test here, nothing is skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

RUNNER = REPO / "runner"
# bottom to top: each layer may import the ones before it, never those after it
LAYERS = ["core", "graph", "language", "executor", "models", "nodes", "records", "engine", "importers", "server", "cli"]
# below, yet out of reach: the models know nothing of the workflow language or of how tasks are scheduled
NEVER = {("models", "language"), ("models", "executor")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module, line) of every import in the file, those inside functions too."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join(anchor + ([base] if base else []))
            found += [(base, node.lineno)] + [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "runner" and parts[1] in LAYERS else None


def test_every_package_is_a_known_layer():
    packages = {path.name for path in RUNNER.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert packages == set(LAYERS), "a new package: add it to LAYERS (and to docs/architecture.md)"


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_the_ones_below(layer):
    above = set(LAYERS[LAYERS.index(layer) + 1:])
    offending = []
    for path in sorted((RUNNER / layer).rglob("*.py")):
        for target, line in imports(path):
            other = layer_of(target)
            if other in above or (layer, other) in NEVER:
                offending.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert offending == []


def test_no_import_cycles():
    """Tarjan's strongly connected components over module imports (a package's import of an ancestor does not count:
    the ancestor's __init__ runs first anyway)."""
    files = {module_name(path): path for path in RUNNER.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for target, _line in imports(path):
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
        edges[name] = targets
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    assert cycles == []


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The check above is not vacuous: two modules importing each other are found."""
    package = tmp_path / "runner"
    (package / "core").mkdir(parents=True)
    for path in (package / "__init__.py", package / "core" / "__init__.py"):
        path.write_text("")
    (package / "core" / "a.py").write_text("from . import b\n")
    (package / "core" / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    monkeypatch.setattr(__import__(__name__), "RUNNER", package)
    with pytest.raises(AssertionError):
        test_no_import_cycles()


def _string_comparisons(path: Path, names: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            values = {c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
            found += [f"{path.relative_to(REPO)}:{node.lineno} compares with '{value}'" for value in values & names]
    return found


def test_nothing_outside_declarations_switches_on_a_node_type_name():
    """Node type names are compared only where node types are declared (nodes/) and by the ComfyUI importer."""
    from runner.nodes import NODE_TYPES

    offending = []
    for path in sorted(RUNNER.rglob("*.py")):
        relative = path.relative_to(RUNNER).parts
        if relative[0] in ("nodes",) or relative[:2] == ("importers", "comfyui"):
            continue
        offending += _string_comparisons(path, set(NODE_TYPES))
    assert offending == []


def _field_reads(path: Path, names: set[str]) -> list[str]:
    """Reads of a node's validated fields by name: `X.fields.NAME`, `getattr(X.fields, "NAME")` (or a variable named
    like `fields`)."""
    def is_fields(expr) -> bool:
        return (isinstance(expr, ast.Attribute) and expr.attr == "fields") or (isinstance(expr, ast.Name)
                                                                              and expr.id.endswith("fields"))

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in names and is_fields(node.value):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} reads field '{node.attr}'")
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in names and is_fields(node.args[0])):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} reads field '{node.args[1].value}'")
    return found


def test_nothing_outside_declarations_reads_node_fields_by_name():
    """A node's fields are read by name only by the node types themselves (nodes/, and models/, which implements
    their run functions), by the language that defines the format, and by the importer. Records, the engine, the
    executors and the CLI work from what ran (the recorded call, the model identity, declared capabilities)."""
    from runner.language.fields import nested_models
    from runner.nodes import NODE_TYPES

    names = {info.alias or name for node_type in NODE_TYPES.values()
             for model in (node_type.model, *nested_models(node_type.model).values())
             for name, info in model.model_fields.items()}
    offending = []
    for path in sorted(RUNNER.rglob("*.py")):
        relative = path.relative_to(RUNNER).parts
        if relative[0] in ("nodes", "models", "language") or relative[:2] == ("importers", "comfyui"):
            continue
        offending += _field_reads(path, names - {"items"})  # dict.items() of a variable named like fields
    assert offending == []


def test_the_field_guard_sees_a_field_read(tmp_path):
    sample = tmp_path / "runner" / "records" / "sample.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("def f(node):\n    return node.fields.prompt, getattr(node.fields, 'steps', None)\n")
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert len(_field_reads(sample, {"prompt", "steps"})) == 2
    finally:
        REPO = saved


def test_nothing_outside_the_families_switches_on_a_family():
    """A model family is one module under runner/models/families/: no code elsewhere compares with a family's key, its
    name or a pipeline class that identifies it (the generic code asks the family instead)."""
    from runner.models.families import AUTO, FAMILIES

    words = {word for family in (*FAMILIES, AUTO) for word in (family.key, family.name, *family.classes)}
    offending = []
    for path in sorted(RUNNER.rglob("*.py")):
        relative = path.relative_to(RUNNER).parts
        if relative[:2] == ("models", "families") or relative[:2] == ("importers", "comfyui"):
            continue
        offending += _string_comparisons(path, words)
    assert offending == []


def test_fields_in_cache_keys_change_only_on_purpose():
    """A node's cache key hashes its fields. A field added to a node type later must be marked KeyedWhenSet (left at
    its default it stays out of the key), so that every existing key, and every cached result, survives the upgrade;
    tests/keyed_fields.json is the list of fields that are always keyed."""
    import json

    from runner.language.fields import KeyedWhenSet
    from runner.nodes import NODE_TYPES

    keyed = {name: sorted((info.alias or field) for field, info in decl.fields.model_fields.items()
                          if field not in ("type", "seed") and not any(isinstance(m, KeyedWhenSet) for m in info.metadata))
             for name, decl in NODE_TYPES.items()}
    committed = json.loads((Path(__file__).parent / "keyed_fields.json").read_text())
    changed = {name: (committed.get(name), fields) for name, fields in keyed.items() if committed.get(name) != fields
               and name in committed}
    assert not changed, ("fields always keyed changed (committed, now): mark a new field KeyedWhenSet, or, when the "
                         f"change must recompute, bump the node type's version and update tests/keyed_fields.json: {changed}")
    assert set(committed) == set(keyed), "a node type was added or removed: add it to tests/keyed_fields.json"


def test_pyflakes_finds_nothing_in_runner_and_bench():
    """Unused imports and names, undefined names, shadowed loop variables (ruff's F rules, as exported scripts are
    checked): what a refactoring leaves behind."""
    import subprocess
    import sys

    checked = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F", "runner", "bench"],
                             cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout[-3000:]
