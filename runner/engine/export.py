"""`runner export`: a workflow as the plain diffusers script it stands for.

The script imports nothing of runner: diffusers, transformers, torch and Pillow (numpy / OpenCV where a node needs
them). It is written from the validated workflow and its plan (the seeds runner derives, the model sources it
resolves), node by node in the order runner runs them, each node type by its own declaration's `export` (runner.nodes)
and each generation node by its model family's exporter (runner.models.families); what none of them can express is
an ExportUnsupported naming the node, never skipped. The parity tests run `runner run` and the exported script on the
same workflow and compare the saved images pixel for pixel.
"""

from __future__ import annotations

import builtins
import json
import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..language.refs import Link
from ..language.workflow import Workflow


class ExportUnsupported(Exception):
    """A node (or a setting) this version of runner cannot write out as a diffusers script."""

    def __init__(self, node_id: str | None, what: str, fix: str = ""):
        where = f"node '{node_id}': " if node_id else ""
        super().__init__(f"{where}{what}" + (f"; {fix}" if fix else ""))
        self.node_id, self.what, self.fix = node_id, what, fix


# names the script itself uses: no param, node or model variable may take them
RESERVED_NAMES = {"torch", "np", "cv2", "Image", "ImageDraw", "ImageFilter", "ImageOps", "Path", "sys", "math", "OUT",
                  "SWEEP_OUT", "number",
                  "WORKFLOW_DIR", "device", "dtype", "diffusers", "transformers", "pipe", "result", "generator",
                  "kept", "KeepLatents", "grown", "save", "main", "variant", "VARIANTS", "name", "values"}


NODE_SEED_HELPER = '''
def node_seed(workflow_seed, node_id):
    """runner's seed for a node that sets none: the first 4 bytes of sha256("SEED/NODE_ID"), big-endian."""
    return int.from_bytes(hashlib.sha256(f"{workflow_seed}/{node_id}".encode()).digest()[:4], "big")
'''


@dataclass
class Block:
    """The lines one node (or one section) adds to the script."""

    title: str
    lines: list[str] = field(default_factory=list)


class Script:
    """What the exporters write into: imports, helpers, variables for params, models and node outputs, lines."""

    def __init__(self, workflow: Workflow, plan, registry):
        # `registry`: a runner.models.registry.ModelRegistry, to find the models' files (nothing is loaded through it)
        self.workflow, self.plan, self.registry = workflow, plan, registry
        self.imports: set[str] = set()  # "import torch", "from PIL import Image"
        self.helpers: dict[str, str] = {}  # name -> source, in first-use order
        self.taken: set[str] = set(RESERVED_NAMES)
        self.param_names: dict[str, str] = {}
        self.model_blocks: list[str] = []
        self.model_vars: dict[tuple, str] = {}  # a loading's key -> its variable
        self.node_blocks: list[Block] = []
        self.outputs: dict[tuple[str, str], str] = {}  # (node id, output) -> variable
        self.modes: dict[str, str] = {}  # variable -> PIL mode where known
        self.state: dict[Any, Any] = {}  # what exporters remember between nodes (a pipeline's current scheduler)
        self.node_id: str | None = None
        self.fields = None
        self.block: Block | None = None
        # a sweep: swept path ("params.NAME", "nodes.ID.FIELD...") -> the loop variable standing for it, and each
        # loop variable's value in this variant (Python source), as the expressions used them
        self.swept: dict[str, str] = {}
        self.loop_values: dict[str, str] = {}

    # ------------------------------------------------------------ names
    def name(self, wanted: str) -> str:
        """A fresh Python identifier like `wanted`."""
        base = re.sub(r"\W", "_", wanted) or "value"
        if base[0].isdigit():
            base = "_" + base
        candidate, n = base, 2
        while candidate in self.taken or keyword.iskeyword(candidate) or hasattr(builtins, candidate):
            candidate, n = f"{base}_{n}", n + 1
        self.taken.add(candidate)
        return candidate

    def need(self, line: str) -> None:
        """An import line the script needs (`import torch`, `from PIL import Image`)."""
        self.imports.add(line)

    def helper(self, name: str, source: str) -> str:
        """A helper function or class (defined once, at the top); returns its name."""
        self.helpers.setdefault(name, source.strip("\n"))
        return name

    def function(self, function) -> str:
        """One of runner's own functions, copied into the script as it is (its imports inside it), so that the
        script does what runner does; returns its name."""
        import inspect

        return self.helper(function.__name__, f"# runner's {function.__module__}.{function.__name__}, copied\n"
                                              + inspect.getsource(function))

    # ------------------------------------------------------------ values
    def literal(self, value: Any) -> str:
        """Python source for a plain value (tuples stay tuples, floats keep their type)."""
        if isinstance(value, Link):
            return self.ref(value)
        if isinstance(value, bool) or value is None:
            return repr(value)
        if isinstance(value, float):
            return repr(value) if value == value and value not in (float("inf"), float("-inf")) else f'float("{value}")'
        if isinstance(value, str):
            return json.dumps(value, ensure_ascii=False)  # a Python string literal too, in double quotes
        if isinstance(value, int):
            return repr(value)
        if isinstance(value, tuple):
            inner = ", ".join(self.literal(v) for v in value)
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        if isinstance(value, list):
            return "[" + ", ".join(self.literal(v) for v in value) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{self.literal(k)}: {self.literal(v)}" for k, v in value.items()) + "}"
        if hasattr(value, "model_dump"):
            return self.literal(value.model_dump(by_alias=True))
        return repr(value)

    def expr(self, *path: Any, value: Any = None) -> str:
        """The current node's field at `path` as Python source: a param's variable where the workflow wrote
        `$params.NAME` (or an f-string for `${params.NAME}` inside text), else the value runner resolved."""
        resolved = value if value is not None else self._field_value(path)
        raw = self._raw(path)
        node_path = ".".join(["nodes", str(self.node_id), *map(str, path)])
        if node_path in self.swept:
            self.loop_values[self.swept[node_path]] = self.literal(resolved)
            return self.swept[node_path]
        if isinstance(raw, str) and not isinstance(resolved, Link):
            whole = re.fullmatch(r"\$params\.([A-Za-z_][A-Za-z0-9_-]*)", raw)
            if whole and whole.group(1) in self.param_names:
                param = self.workflow.params.get(whole.group(1))
                if param == resolved and type(param) is type(resolved):
                    return self.param(whole.group(1))
            if isinstance(resolved, str) and "${params." in raw:
                text = self._fstring(raw)
                if text is not None:
                    return text
        return self.literal(resolved)

    def _fstring(self, raw: str) -> str | None:
        whole = re.fullmatch(r"\$\{\s*params\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}", raw)
        if whole and isinstance(self.workflow.params.get(whole.group(1)), str) and whole.group(1) in self.param_names:
            return self.param(whole.group(1))  # the text is the param's, as it is
        parts, pos = [], 0
        for match in re.finditer(r"\$\$|\$\{([^}]*)\}", raw):
            parts.append(raw[pos:match.start()].replace("{", "{{").replace("}", "}}"))
            if match.group(0) == "$$":
                parts.append("$")
            else:
                name = match.group(1).strip()
                if not name.startswith("params.") or name[7:] not in self.param_names:
                    return None
                if not isinstance(self.workflow.params.get(name[7:]), str):
                    return None  # a number's text: str() of it may differ from how runner wrote it
                parts.append("{" + self.param(name[7:]) + "}")
            pos = match.end()
        parts.append(raw[pos:].replace("{", "{{").replace("}", "}}"))
        return "f" + json.dumps("".join(parts), ensure_ascii=False)

    def param(self, name: str) -> str:
        """The variable of param `name` (a loop variable where a sweep sets it)."""
        variable = self.param_names[name]
        if f"params.{name}" in self.swept:
            self.loop_values[variable] = self.literal(self.workflow.params[name])
        return variable

    def _field_value(self, path: tuple) -> Any:
        value: Any = self.fields
        for key in path:
            value = value[key] if isinstance(value, (list, tuple, dict)) else getattr(value, key)
        return value

    def _raw(self, path: tuple) -> Any:
        value: Any = self.workflow.document.get("nodes", {}).get(self.node_id, {})
        for key in path:
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and isinstance(key, int) and key < len(value):
                value = value[key]
            else:
                return None
        return value

    # ------------------------------------------------------------ links
    def ref(self, link: Link) -> str:
        """The variable holding an upstream node's output."""
        output = link.output or self.workflow.nodes[link.node].type.default_output
        try:
            return self.outputs[(link.node, output)]
        except KeyError:
            raise ExportUnsupported(self.node_id, f"its input {link} was not written by node '{link.node}'") from None

    def image(self, link: Link, mode: str = "RGB") -> str:
        """An upstream image in `mode`, converted only where it may not be in it already."""
        variable = self.ref(link)
        return variable if self.modes.get(variable) == mode else f'{variable}.convert("{mode}")'

    def images(self, value: Link | list[Link]) -> str:
        """Several images (an images output, image links, or both) as one list expression."""
        links = value if isinstance(value, list) else [value]
        parts = []
        for link in links:
            output = link.output or self.workflow.nodes[link.node].type.default_output
            kind = self.workflow.nodes[link.node].type.outputs.get(output)
            parts.append(("*" if kind == "images" else "") + self.ref(link))
        if len(parts) == 1 and parts[0].startswith("*"):
            return f"list({parts[0][1:]})"
        return "[" + ", ".join(parts) + "]"

    def output(self, name: str, mode: str | None = None) -> str:
        """The variable for the current node's output `name` (its id for the default output)."""
        node = self.workflow.nodes[self.node_id]
        variable = self.name(self.node_id if name == node.type.default_output else f"{self.node_id}_{name}")
        self.outputs[(self.node_id, name)] = variable
        if mode:
            self.modes[variable] = mode
        return variable

    def read(self, name: str) -> bool:
        """Whether a node of the workflow reads the current node's output `name`."""
        for other in self.workflow.nodes.values():
            for link, _accepts, _path in other.links():
                if link.node == self.node_id and (link.output or self.workflow.nodes[link.node].type.default_output) == name:
                    return True
        return False

    # ------------------------------------------------------------ lines
    def line(self, text: str = "") -> None:
        assert self.block is not None
        self.block.lines.extend(text.split("\n") if text else [""])

    def model_line(self, text: str) -> None:
        self.model_blocks.extend(text.split("\n"))

    @property
    def task(self):
        return self.plan.tasks[self.node_id]

    @property
    def seed(self) -> int | str:
        """The node's seed as Python source: its number, or, in a loop over workflow seeds, runner's derivation."""
        if "seed" in self.swept and self.derived:
            self.need("import hashlib")
            self.helper("node_seed", NODE_SEED_HELPER)
            self.loop_values[self.swept["seed"]] = str(self.plan.workflow_seed)
            return f"node_seed({self.swept['seed']}, {json.dumps(self.node_id)})"
        return self.task.seed

    @property
    def derived(self) -> bool:
        """Whether the node's seed is the one runner derives from the workflow seed (the node sets none)."""
        from ..executor.plan import derived_seed

        return self.task.seed == derived_seed(self.plan.workflow_seed, self.node_id)

    def seed_comment(self) -> str:
        if self.derived:
            workflow_seed = "SEED" if "seed" in self.swept else self.plan.workflow_seed
            return f"runner's seed for this node: sha256 of '{workflow_seed}/{self.node_id}' (workflow seed / node id)"
        return "the node's own seed"

    def source(self, ref: str):
        from ..models.sources import ModelSource

        return ModelSource.from_data(self.task.models[ref])

    def unsupported(self, what: str, fix: str = "") -> ExportUnsupported:
        return ExportUnsupported(self.node_id, what, fix or "run it with `runner run`; the export cannot write this "
                                 "node as a diffusers script in this version of runner")


# ---------------------------------------------------------------- the script
def export_script(workflow: Workflow, plan, registry, *, command: str = "") -> str:
    """The Python source of the diffusers script `workflow` stands for (ExportUnsupported: a node it cannot write).
    `registry` (runner.models.registry.ModelRegistry) finds the models' files; nothing is loaded."""
    return _assemble(_written(workflow, plan, registry), command)


def export_sweep(variants: list[tuple[dict[str, Any], Workflow, Any]], registry, *, command: str = "") -> str:
    """The script of a sweep (each variant: (swept values, its workflow, its plan)) as one loop over the variants.
    The loop is written only where every variant's nodes read the same with the swept values as loop variables
    (a swept param or node field the lines read through their variables); otherwise ExportUnsupported says which
    path the loop cannot carry."""
    paths = list(variants[0][0])
    scripts = []
    for values, workflow, plan in variants:
        scripts.append(_written(workflow, plan, registry, paths))
    first = scripts[0]
    body = _body(first)
    for (values, _workflow, _plan), script in zip(variants[1:], scripts[1:]):
        if _body(script) != body:
            changed = ", ".join(path for path in paths if values.get(path) != variants[0][0].get(path))
            raise ExportUnsupported(None, f"the sweep changes {changed or 'the workflow'} in a way the export cannot "
                                    "write as a loop (a seed, a model, or a value the script writes out as written)",
                                    "export each variant alone: runner export WF --set PATH=VALUE")
    unused = [path for path in paths if first.swept[path] not in first.loop_values]
    if unused:
        raise ExportUnsupported(None, f"the sweep's {', '.join(unused)} is not read by any node the export writes",
                                "remove it from the sweep, or export each variant alone with --set")
    rows = [{variable: script.loop_values[variable] for variable in first.loop_values} for script in scripts]
    labels = [", ".join(f"{path}={json.dumps(values[path])}" for path in paths) for values, _w, _p in variants]
    return _assemble(first, command, loop=(rows, labels))


def _written(workflow: Workflow, plan, registry, swept: list[str] = ()) -> Script:
    script = Script(workflow, plan, registry)
    script.need("import sys")
    script.need("from pathlib import Path")
    script.need("import torch")
    for name in workflow.params:
        script.param_names[name] = script.name(name)
    for path in swept:
        if path.startswith("params.") and path[7:] in script.param_names:
            script.swept[path] = script.param_names[path[7:]]
        elif path.startswith("nodes."):
            script.swept[path] = script.name("_".join(path.split(".")[1:]))
        elif path == "seed":
            script.swept[path] = script.name("workflow_seed")
        else:
            raise ExportUnsupported(None, f"the sweep sets {path}, which the export cannot write as a loop (it "
                                    "sweeps params, node fields and the workflow seed)", "export each variant alone: "
                                    f"runner export WF --set {path}=VALUE")
    for node_id in plan.order:
        node = workflow.nodes[node_id]
        if node.type.export is None:
            raise ExportUnsupported(node_id, f"{node.type.name} nodes cannot be written as a diffusers script in this "
                                    "version of runner", "run the workflow with `runner run`")
        script.node_id, script.fields = node_id, node.fields
        script.block = Block(f"{node_id} ({node.type.name})")
        node.type.export(script, node.fields)
        script.node_blocks.append(script.block)
    return script


def _body(script: Script) -> tuple:
    return (sorted(script.imports), list(script.helpers.values()), script.model_blocks,
            [(block.title, block.lines) for block in script.node_blocks])


def _assemble(script: Script, command: str, loop: tuple[list[dict[str, str]], list[str]] | None = None) -> str:
    from .. import __version__

    workflow = script.workflow
    description = workflow.document.get("description")
    title = workflow.name + (f": {description}" if isinstance(description, str) and description else "")
    lines = ['"""' + _docstring_line(title), "",
             f"The plain diffusers script that runner's workflow {_docstring_line(str(workflow.path.name))} stands for,",
             f"written by `{_docstring_line(command or 'runner export')}` (runner {__version__}). It imports nothing of runner.",
             "", "    python THIS_SCRIPT.py [OUTPUT_FOLDER]    (default: ./" + f"{workflow.name}-export)", "",
             "Seeds: runner derives each node's seed from the workflow seed and the node id (the first 4 bytes of",
             "sha256('SEED/NODE_ID') as a big-endian integer); they are written out below as numbers. Every call draws",
             "its noise from a CPU generator so seeded, as runner does, so the images are the ones `runner run` makes.",
             '"""', ""]
    lines += _import_lines(script.imports)
    lines.append("")
    for source in script.helpers.values():
        lines += ["", source, ""]
    lines += ["", f"OUT = Path(sys.argv[1] if len(sys.argv) > 1 else {script.literal(workflow.name + '-export')})",
              "OUT.mkdir(parents=True, exist_ok=True)",
              f"WORKFLOW_DIR = Path({script.literal(str(Path(workflow.base_dir).resolve()))})  # the workflow's folder: "
              "input files are read from here"]
    lines += _device_lines(workflow)
    if script.param_names:
        lines += ["", "# params"]
        for name, variable in script.param_names.items():
            lines.append(f"{variable} = {script.literal(workflow.params[name])}")
    if script.model_blocks:
        lines += ["", "# models", *script.model_blocks]
    if loop is None:
        for block in script.node_blocks:
            lines += ["", f"# {block.title}", *block.lines]
        return "\n".join(lines).rstrip() + "\n"
    rows, labels = loop
    lines += ["", "# the sweep: the nodes run once per variant, into OUTPUT_FOLDER/NNN (as `runner run` numbers them)",
              "VARIANTS = ["]
    for row, label in zip(rows, labels):
        lines.append("    {" + ", ".join(f"{json.dumps(variable)}: {value}" for variable, value in row.items())
                     + "},  # " + label)
    lines += ["]", "SWEEP_OUT = OUT", "for number, variant in enumerate(VARIANTS):",
              '    OUT = SWEEP_OUT / f"{number:03d}"', "    OUT.mkdir(parents=True, exist_ok=True)"]
    for variable in rows[0]:
        lines.append(f"    {variable} = variant[{json.dumps(variable)}]")
    for block in script.node_blocks:
        lines += ["", f"    # {block.title}", *[("    " + text) if text else "" for text in block.lines]]
    return "\n".join(lines).rstrip() + "\n"


def _docstring_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


STANDARD_LIBRARY = ("sys", "math", "pathlib", "hashlib", "io", "urllib", "typing")


def _import_lines(imports: set[str]) -> list[str]:
    plain = sorted(line for line in imports if line.startswith("import "))
    grouped: dict[str, set[str]] = {}
    for line in imports:
        if line.startswith("from "):
            module, _, names = line[5:].partition(" import ")
            grouped.setdefault(module, set()).update(n.strip() for n in names.split(","))
    froms = [f"from {module} import {', '.join(sorted(names))}" for module, names in sorted(grouped.items())]
    standard = [line for line in plain + froms if line.split()[1].split(".")[0] in STANDARD_LIBRARY]
    others = [line for line in plain + froms if line not in standard]
    return standard + ([""] if standard and others else []) + others


def _device_lines(workflow: Workflow) -> list[str]:
    if workflow.device == "auto":
        device = ('"cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"'
                  "  # runner's device: auto")
    else:
        device = json.dumps(workflow.device)
    if workflow.dtype == "auto":
        dtype = 'torch.float16 if device.startswith("cuda") else torch.float32  # runner\'s dtype: auto'
    else:
        dtype = f"torch.{workflow.dtype}"
    return [f"device = {device}", f"dtype = {dtype}"]
