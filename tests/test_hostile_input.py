"""Bad input never crashes (issue 12).

Whatever the bytes of a workflow file, a --set value or an embedded workflow,
`runner validate` and `runner run --dry-run` exit 0 or 2, print located problems
and no traceback, within a time and memory bound.

- a table of the inputs that used to crash, hang or blow up: each is now exit 2
  with a message at its place (file:line:col where there is one);
- the limits at their boundaries (the last value allowed passes, one more fails);
- hypothesis properties that mutate the recipes in workflows/ (byte flips,
  control characters, truncation, deep nesting, huge integers, alias bombs,
  YAML fragments spliced in) and throw odd --set values at them;
- a few real processes, for the exit status and stderr a user sees.

In-process runs go through the CLI's main(); an exception escaping it fails the
test like a traceback would. Memory is the peak traced by tracemalloc.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.cli import main
from runner.language.errors import WorkflowError
from runner.language.workflow import MAX_NODES, MAX_PARAMS
from runner.nodes.call_checks import MAX_GENERATION_PIXELS
from runner.language.yaml_source import INT_MAX, INT_MIN, MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_STRING, MAX_VALUES, load_yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"
RECIPES = {path.name: path.read_bytes() for path in sorted(WORKFLOWS.glob("*.yaml"))}
FILE = "wf.yaml"
SECONDS = 20.0  # per input, in-process: a guard against hangs and blow-ups (the slowest case, a 1,000-node chain, takes 2-7 s on a busy 2-core machine), not a speed target
MEMORY = 200 << 20  # peak bytes allocated per input (an alias bomb used to take 2-4 GB)
LOCATED = re.compile(r"^error: (\S+\.(yaml|png)( \(embedded workflow\))?(:\d+:\d+)?|--[a-z-]+ .*?|--zip|sweep): ", re.M)

BASE = "version: 1\nnodes:\n  a: {type: load_image, path: in.png}\n"  # params and more follow on line 4
WITH_P = BASE + "params: {p: 1}\n"  # what --set params.p=... sets


@dataclass
class Result:
    status: int
    out: str
    err: str
    seconds: float  # wall seconds: the guard against hangs
    peak: int
    cpu: float = 0.0  # this process's CPU seconds: the tight bounds (a busy 2-core machine stretches wall time)


def cli(*args, trace: bool = True) -> Result:
    """main(args) with stdout and stderr captured, timed, its peak memory traced (tracing slows parsing about 3 times)."""
    out, err = io.StringIO(), io.StringIO()
    if trace:
        tracemalloc.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([str(a) for a in args])
            except SystemExit as exc:  # argparse refusing the command line: exit 2 with its usage message
                status = exc.code
    finally:
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.stop()
    return Result(status, out.getvalue(), err.getvalue(), seconds, peak, cpu)


def assert_clean(result: Result) -> None:
    """Exit 0 or 2, no traceback, every problem located, within the time and memory bound."""
    text = result.out + result.err
    assert result.status in (0, 2), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    if result.status == 2 and "usage:" not in result.err:
        errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
        assert errors and re.search(r"^\d+ problems? found$", result.err, re.M), result.err[-3000:]
        assert len(LOCATED.findall(result.err)) == len(errors), result.err[-3000:]
    assert result.seconds < SECONDS, f"{result.seconds:.1f} s"
    assert result.peak < MEMORY, f"{result.peak / 2**20:.0f} MiB"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A folder like workflows/ (the recipes' inputs beside them), warmed up: imports are not counted as an input's memory."""
    folder = tmp_path_factory.mktemp("hostile")
    shutil.copytree(WORKFLOWS / "inputs", folder / "inputs")
    shutil.copy(WORKFLOWS / "inputs" / "room.png", folder / "in.png")
    for name, data in RECIPES.items():
        (folder / name).write_bytes(data)
    for name in RECIPES:
        assert cli("validate", folder / name).status == 0
    assert cli("run", "--dry-run", "--out", folder / "out", folder / "txt2img.yaml").status == 0
    return folder


def write(folder: Path, data: str | bytes, name: str = FILE) -> Path:
    path = folder / name
    path.write_bytes(data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data)
    return path


# ----------------------------------------------------------------- the findings, one case each

def nested_flow(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_block(depth: int, indent: int) -> str:
    return "".join("\n" + " " * (indent + 2 * level) + "k:" for level in range(depth)) + " 1"


def alias_bomb(levels: int, indent: str = "  ") -> str:
    lines = [f"{indent}l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@dataclass
class Case:
    id: str
    data: str | bytes
    where: str  # the location printed: wf.yaml:LINE:COL, wf.yaml (no position), or an option such as '--set params.p=...'
    words: tuple[str, ...]
    args: tuple[str, ...] = ()


TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
SET = "the --set option"  # a case's place is its --set option, shortened as below when long


def shown_option(text: str, option: str = "--set") -> str:
    """How a problem's place names an option: in full, or its first 80 characters when it is over 100 long."""
    text = text if len(text) <= 100 else f"{text[:80]}... ({len(text):,} characters)"
    return f"{option} {text}".replace("\n", "\\n").replace("\x01", "\\x01")  # the escapes of the characters these tests use

CASES = [
    Case("control-character", BASE + 'params: {p: "a\x01b"}\n', "wf.yaml:4:15", ("control character U+0001", "not allowed")),
    Case("control-character-c1", BASE + "params: {p: a\x9bb}\n", "wf.yaml:4:14", ("control character U+009B",)),
    Case("nul-byte", BASE + "params: {p: x}\x00\n", "wf.yaml:4:15", ("a NUL byte (U+0000)",)),
    Case("nul-byte-first", "\x00" + BASE, "wf.yaml:1:1", ("a NUL byte",)),
    Case("nul-escape", BASE + 'params: {p: "in\\0.png"}\n', "wf.yaml:4:13", ("NUL character",)),
    Case("surrogate-escape", BASE + 'params: {p: "\\ud800"}\n', "wf.yaml:4:13", ("U+D800", "surrogate")),
    Case("not-utf8", (BASE + "params: {p: caf\xe9}\n").encode("latin-1"), "wf.yaml:4:16", ("not UTF-8", "byte 0xe9")),
    Case("int-5000-digits", BASE + "seed: " + "9" * 5000 + "\n", "wf.yaml:4:7",
         ("seed: integer 99999999999999999999... (5,000 characters) is out of range", "64 bits")),
    Case("int-5000-digits-in-params", BASE + "params: {p: -" + "1" * 5000 + "}\n", "wf.yaml:4:13", ("out of range",)),
    Case("int-beyond-64-bits", BASE + f"seed: {INT_MAX + 1}\n", "wf.yaml:4:7", ("out of range",)),
    Case("int-5000-digits-by-set", WITH_P, SET, ("out of range", "column 1 of the value"),
         ("--set", "seed=" + "9" * 5000)),
    Case("explicit-tag-mismatch", BASE + "params: {p: !!int abc}\n", "wf.yaml:4:13", ("'abc' is not a valid !!int",)),
    Case("flow-nesting-1000-in-params", BASE + "params: {p: " + nested_flow(1000) + "}\n", f"wf.yaml:4:{13 + MAX_DEPTH - 2}",
         (TOO_DEEP,)),
    Case("flow-nesting-10000-in-a-node", "version: 1\nnodes:\n  a: {type: load_image, path: in.png, size: "
         + nested_flow(10_000) + "}\n", f"wf.yaml:3:{45 + MAX_DEPTH - 3}", (TOO_DEEP,)),
    Case("block-nesting-1000", BASE + "params:" + nested_block(1000, 2) + "\n", f"wf.yaml:{4 + MAX_DEPTH}:{2 * MAX_DEPTH + 1}",
         (TOO_DEEP,)),
    Case("block-sequence-nesting-10000", BASE + "params:\n  p:\n    " + "- " * 10_000 + "x\n", f"wf.yaml:6:{5 + 2 * (MAX_DEPTH - 2)}",
         (TOO_DEEP,)),
    Case("nesting-1000-by-set", WITH_P, SET, (TOO_DEEP, f"column {MAX_DEPTH - 1} of the value"),
         ("--set", "params.p=" + nested_flow(1000))),
    Case("nesting-by-alias", BASE + "params:\n  a: &a " + nested_flow(40) + "\n  b: " + "[" * 30 + "*a" + "]" * 30 + "\n",
         "wf.yaml:6:36", (TOO_DEEP, "aliases expanded")),
    Case("recursive-alias-sequence", BASE + "params: {p: &a [*a]}\n", "wf.yaml:4:17", ("alias '*a' is inside the value it names",)),
    Case("recursive-alias-mapping", BASE + "params:\n  p: &m\n    q: {r: *m}\n", "wf.yaml:6:12", ("alias '*m' is inside",)),
    Case("merge-key-scalar", BASE + "params: {<<: 3}\n", "wf.yaml:4:14", ("merge key (<<) takes a mapping", "not the value '3'")),
    Case("merge-key-list-of-scalars", BASE + "params:\n  base: &b {x: 1}\n  p: {<<: [*b, [1]]}\n", "wf.yaml:6:16",
         ("merge key (<<)", "not a list")),
    Case("undefined-alias", BASE + "params: {p: *nowhere}\n", "wf.yaml:4:13", ("undefined alias 'nowhere'",)),
    Case("billion-laughs-9", BASE + "params:\n" + alias_bomb(9), "wf.yaml:9:37", (f"more than {MAX_VALUES:,} values", "alias bomb")),
    Case("billion-laughs-7-by-set", WITH_P, SET,
         (f"more than {MAX_VALUES:,} values",),
         ("--set", "params.p={" + alias_bomb(7, "").replace("\n", ", ").rstrip(", ") + "}")),
    Case("string-10-mb", BASE + "params: {p: " + "x" * 10_000_000 + "}\n", "wf.yaml",
         ("the file is 10,000,070 bytes", "limit of 1,048,576 bytes (1 MiB)")),
    Case("string-10-mb-by-set", WITH_P, SET,
         ("the text is 10,000,000 bytes", "1 MiB"), ("--set", "params.p=" + "x" * 10_000_000)),
    Case("string-over-limit", BASE + "params: {p: " + "x" * (MAX_STRING + 1) + "}\n", "wf.yaml:4:13",
         (f"text of {MAX_STRING + 1:,} characters is longer than the limit of {MAX_STRING:,}",)),
    Case("key-over-limit", BASE + "params: {" + "k" * (MAX_STRING + 1) + ": 1}\n", "wf.yaml:4:10", ("longer than the limit",)),
    Case("params-100000", BASE + "params:\n" + "".join(f"  p{i}: {i}\n" for i in range(100_000)), "wf.yaml",
         ("the file is", "1 MiB")),
    Case("params-over-limit", BASE + "params:\n" + "".join(f"  p{i}: {i}\n" for i in range(MAX_PARAMS + 1)), "wf.yaml:4:1",
         (f"{MAX_PARAMS + 1:,} params is more than the limit of {MAX_PARAMS:,}",)),
    Case("nodes-over-limit", "version: 1\nnodes:\n" + "".join(f"  n{i}: {{type: load_image, path: in.png}}\n"
                                                               for i in range(MAX_NODES + 1)), "wf.yaml:2:1",
         (f"{MAX_NODES + 1:,} nodes is more than the limit of {MAX_NODES:,}",)),
    Case("set-index-5000-digits", BASE, SET, ("list index", "too large"),
         ("--set", "nodes.a.size[" + "9" * 5000 + "]=1")),
    Case("set-non-ascii-digit-path", BASE, SET, ("unknown field '²'",), ("--set", "nodes.a.²=1")),
    Case("set-control-character", WITH_P, SET, ("control character U+0001", "column 2 of the value"),
         ("--set", "params.p=a\x01b")),
    # an escape past the last code point (PyYAML's chr() raises ValueError), in the file and in a --set value
    Case("escape-beyond-unicode", BASE + 'params: {p: "\\U00110000"}\n', "wf.yaml:4:16",
         ("an escape names no character",)),
    Case("set-escape-beyond-unicode", WITH_P, SET, ("an escape names no character",),
         ("--set", 'params.p="\\U00110000"')),
    Case("empty-model-source", "version: 1\nmodels: {m: ''}\nnodes:\n  a: {type: txt2img, model: $models.m}\n",
         "wf.yaml:2:10", ("models.m", "give the model a source")),
    Case("url-port-zero", BASE.replace("path: in.png", "url: 'http://example.com:0/x.png'"), "wf.yaml:3:3",
         ("the port in http://example.com:0/x.png is 0",)),
    Case("url-without-host", BASE.replace("path: in.png", "url: 'http:///x.png'"), "wf.yaml:3:3",
         ("the URL http:///x.png names no host",)),
    Case("device-index-20-digits", "version: 1\ndevice: 'cuda:99999999999999999999'\n" + BASE[len("version: 1\n"):],
         "wf.yaml:2:1", ("device", "cuda:N")),
    # a model name no file system holds (ENAMETOOLONG from stat): not found, located, not a traceback
    Case("model-name-too-long", "version: 1\nmodels: {m: " + "x" * 300 + ".safetensors}\nnodes:\n"
         "  a: {type: txt2img, model: $models.m}\n", "wf.yaml:2:10", ("model '" + "x" * 20, "is not in the workflow's folder")),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_finding_is_a_located_error(case: Case, folder):
    path = write(folder, case.data)
    result = cli("validate", path, *case.args)
    assert_clean(result)
    assert result.status == 2, result.out
    first = result.err.splitlines()[0]
    where = shown_option(case.args[1]) if case.where == SET else str(folder / case.where)
    assert first.startswith(f"error: {where}: "), first[:300]
    for word in case.words:
        assert word in result.err, result.err[:2000]
    assert "fix: " in result.err


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("control-character", "int-5000-digits", "flow-nesting-10000-in-a-node",
                                                              "recursive-alias-sequence", "merge-key-scalar", "billion-laughs-9",
                                                              "nesting-1000-by-set", "string-10-mb")],
                         ids=lambda case: case.id)
def test_finding_is_the_same_error_for_a_dry_run(case: Case, folder):
    path = write(folder, case.data)
    validate = cli("validate", path, *case.args)
    dry_run = cli("run", "--dry-run", "--out", folder / "out", path, *case.args)
    assert_clean(dry_run)
    assert dry_run.status == 2 and dry_run.err == validate.err


def test_findings_embedded_in_a_png_are_located_errors(folder):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    for text, where, word in ((BASE + 'params: {p: "a\x01b"}\n', "4:15", "control character U+0001"),
                              (BASE + "params: {p: " + nested_flow(5000) + "}\n", f"4:{13 + MAX_DEPTH - 2}", TOO_DEEP),
                              (BASE + "params:\n" + alias_bomb(8), "9:37", "values")):
        info = PngInfo()
        info.add_itxt("runner:workflow", text)
        image = folder / "embedded.png"
        Image.new("RGB", (8, 8)).save(image, pnginfo=info)
        result = cli("run", "--dry-run", "--out", folder / "out", image)
        assert_clean(result)
        assert result.status == 2 and result.err.startswith(f"error: {image} (embedded workflow):{where}: "), result.err
        assert word in result.err


def test_damaged_recorded_workflows_are_located_errors(folder):
    """runs diff and reproduce read a run's workflow.yaml through the same reader."""
    runs = folder / "records"
    for name, text in (("a", BASE), ("b", BASE + "params: {p: x\x00}\n")):
        run = runs / "wf" / name
        run.mkdir(parents=True, exist_ok=True)
        (run / "manifest.json").write_text(json.dumps({"workflow": {"name": "wf", "path": str(folder / FILE)}, "status": "ok",
                                                       "nodes": {}}))
        write(run, text, "workflow.yaml")
    damaged = runs / "wf" / "b" / "workflow.yaml"
    for args in (("runs", "diff", runs / "wf" / "a", runs / "wf" / "b"), ("reproduce", runs / "wf" / "b", "--out", runs)):
        result = cli(*args)
        assert_clean(result)
        assert result.status == 2 and result.err.startswith(f"error: {damaged}:4:14: a NUL byte"), result.err


def test_sweep_values_get_the_same_limits(folder):
    path = write(folder, BASE + "params: {p: 1}\n")
    out = ("--out", folder / "out")
    deep = cli("run", "--dry-run", *out, path, "--sweep", "params.p=1," + nested_flow(100))
    assert_clean(deep)
    assert deep.status == 2 and deep.err.startswith("error: --sweep params.p=1,[[[[") and TOO_DEEP in deep.err
    many = cli("run", "--dry-run", *out, path, "--sweep", "params.p=" + ",".join(["1"] * 1_000_000))
    assert_clean(many)
    assert many.status == 2 and "1,000,000 values is more than the limit of 1000 variants" in many.err
    long = cli("run", "--dry-run", *out, path, "--sweep", "params.p=1," + "x" * (MAX_STRING + 1))  # values hold no commas: no bombs
    assert_clean(long)
    assert long.status == 2 and "longer than the limit" in long.err
    control = cli("run", "--dry-run", *out, path, "--sweep", "params.p=1,a\x01")
    assert_clean(control)
    assert control.status == 2 and control.err.startswith("error: --sweep params.p=1,a\\x01:1:2: control character U+0001")


def test_an_escape_beyond_unicode_is_located_at_every_yaml_entry_point(folder, tmp_path, monkeypatch):
    """PyYAML's chr() raises ValueError on "\\U00110000" (the cases escape-beyond-unicode and set-escape-beyond-unicode:
    the workflow file and --set); the other places runner reads YAML say the same at their place: a --sweep value,
    the workflow's sweep: section, YAML text given to Session.run, and an extra_model_paths.yaml."""
    import runner

    escape, words = '"\\U00110000"', "an escape names no character"
    out = ("--out", folder / "out")
    path = write(folder, WITH_P)
    sweep = cli("run", "--dry-run", *out, path, "--sweep", f"params.p=1,{escape}")
    assert_clean(sweep)
    assert sweep.status == 2 and sweep.err.startswith(f"error: --sweep params.p=1,{escape}:1:4: YAML error: {words}"), \
        sweep.err
    section = write(folder, WITH_P + f"sweep:\n  grid: {{params.p: [1, {escape}]}}\n", "swept.yaml")
    for args in (("validate", section), ("run", "--dry-run", *out, section)):
        result = cli(*args)
        assert_clean(result)
        assert result.status == 2 and result.err.startswith(f"error: {section}:6:27: YAML error: {words}"), result.err
    started = time.perf_counter()
    with pytest.raises(WorkflowError) as caught:
        runner.Session(out=tmp_path / "out", cache_dir=tmp_path / "cache").run(WITH_P.replace("p: 1", f"p: {escape}"))
    assert time.perf_counter() - started < SECONDS
    assert str(caught.value).startswith(f"error: <workflow text>:4:16: YAML error: {words}"), str(caught.value)
    paths = write(folder, f"comfyui:\n  base_path: {escape}\n  checkpoints: models/checkpoints/\n",
                  "extra_model_paths.yaml")
    by_option = cli("validate", path, "--model-path", paths)
    assert_clean(by_option)
    assert by_option.status == 2 and by_option.err.startswith(f"error: {paths}:2:17: YAML error: {words}"), by_option.err
    monkeypatch.setenv("RUNNER_MODEL_PATHS", str(paths))
    by_variable = cli("validate", path)
    assert_clean(by_variable)
    assert by_variable.status == 2 and by_variable.err == by_option.err

# ----------------------------------------------------------------- the limits at their boundaries

def test_nesting_limit_is_exact_and_counts_the_set_path(folder):
    def nested(levels: int) -> str:  # the root mapping is level 1, params level 2
        return BASE + "params: {p: " + nested_flow(levels - 2) + "}\n"

    assert cli("validate", write(folder, nested(MAX_DEPTH))).status == 0
    assert TOO_DEEP in cli("validate", write(folder, nested(MAX_DEPTH + 1))).err
    path = write(folder, BASE + "params: {p: 1}\n")
    assert cli("validate", path, "--set", "params.p=" + nested_flow(MAX_DEPTH - 2)).status == 0
    assert TOO_DEEP in cli("validate", path, "--set", "params.p=" + nested_flow(MAX_DEPTH - 1)).err


def test_value_limit_is_exact_and_counts_what_aliases_repeat():
    aliases = MAX_VALUES // 1000 - 2
    exact = MAX_VALUES - 1006 - 1000 * aliases  # values in c's list that make MAX_VALUES in all

    def document(extra: int) -> str:  # root, a, its list of 999 (1002) + b, its list (2) + aliases x 1000 + c, its list (2) + extra
        return "a: &a [" + "1," * 999 + "]\nb: [" + "*a," * aliases + "]\nc: [" + "1," * extra + "]\n"

    data, _ = load_yaml(document(exact), "x")
    assert len(data["b"]) == aliases and data["b"][0] == [1] * 999 and len(data["c"]) == exact
    with pytest.raises(WorkflowError, match=f"more than {MAX_VALUES:,} values"):
        load_yaml(document(exact + 1), "x")


def test_string_and_integer_limits_are_exact(folder):
    ok = cli("validate", write(folder, BASE + f"seed: {INT_MAX}\nparams: {{p: {'x' * MAX_STRING}, q: {INT_MIN}, "
                                              f"r: 0b{'1' * 63}, s: 0x{'0' * 100}7fffffffffffffff}}\n"))
    assert ok.status == 0, ok.err
    assert "out of range" in cli("validate", write(folder, BASE + f"params: {{p: {INT_MIN - 1}}}\n")).err
    assert "out of range" in cli("validate", write(folder, BASE + f"params: {{p: 0b1{'0' * 64}}}\n")).err


def test_size_limit_is_exact(folder):
    strings = "".join(f"  s{i:02d}: {'x' * (MAX_STRING - 16)}\n" for i in range(16))  # 16 strings near the string limit
    head = BASE + "params:\n" + strings + "  p: "
    exact = head + "x" * (MAX_DOCUMENT_BYTES - len(head) - 1) + "\n"
    assert len(exact.encode()) == MAX_DOCUMENT_BYTES
    fits = cli("validate", write(folder, exact), trace=False)
    assert fits.status == 0, fits.err
    over = cli("validate", write(folder, exact + "\n"))
    assert over.status == 2 and f"the file is {MAX_DOCUMENT_BYTES + 1:,} bytes" in over.err


def test_a_chain_of_as_many_nodes_as_allowed_validates_and_plans(folder):
    """The last node in file order is the first in the chain: walks of the graph must not recurse per node."""
    nodes = "".join(f"  a{i:04d}: {{type: canny, image: $a{i + 1:04d}}}\n" for i in range(MAX_NODES - 1))
    chain = write(folder, "version: 1\nnodes:\n" + nodes + f"  a{MAX_NODES - 1:04d}: {{type: load_image, path: in.png}}\n")
    for args in (("validate", chain), ("graph", chain), ("run", "--dry-run", "--out", folder / "out", chain)):
        result = cli(*args, trace=False)
        assert result.status == 0 and "Traceback" not in result.err, result.err[-2000:]
        assert result.seconds < SECONDS, f"{args[0]}: {result.seconds:.1f} s"
    cycle = write(folder, "version: 1\nnodes:\n" + "".join(f"  a{i:04d}: {{type: canny, image: $a{(i + 1) % MAX_NODES:04d}}}\n"
                                                            for i in range(MAX_NODES)))
    result = cli("validate", cycle, trace=False)
    assert result.status == 2 and "the nodes form a cycle: a0000 -> a0999 -> " in result.err


def test_a_file_of_ten_thousand_nodes_is_refused_within_a_second(folder):
    """The red team's 10,000-node file (50,000 values: over the limit) took 2-3.7 s in PyYAML's Python scanner; libyaml's
    parser gives the composer the same events (the same refusal, at the same line and column) in about 0.1 s here."""
    nodes = "".join(f"  n{i}: {{type: load_image, path: in.png}}\n" for i in range(10_000))
    big = write(folder, "version: 1\nnodes:\n" + nodes)
    result = cli("validate", big, trace=False)
    assert result.status == 2 and f"{FILE}:8335:17: more than 50,000 values" in result.err, result.err
    assert result.cpu < 1.0, f"{result.cpu:.2f} s"


def test_merge_keys_follow_yaml_own_keys_win_then_earlier_mappings():
    data, _ = load_yaml("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc: {<<: [*a, *b], x: 3}\nd: {<<: *b}\n", "x")
    assert data["c"] == {"y": 1, "z": 2, "x": 3} and data["d"] == {"y": 2, "z": 2}
    with pytest.raises(WorkflowError, match="duplicate key 'x'"):
        load_yaml("c: {x: 1, x: 2}\n", "x")


def test_a_generation_larger_than_the_pixel_budget_is_a_validate_error(folder):
    """8192 x 8192 on a tiny model, or 64 images of 1024 x 1024, would take tens of GB of activations: refused at
    validate, located at the field that makes it too big."""
    path = write(folder, "version: 1\nnodes:\n  a: {type: txt2img, model: tiny:sd15, width: 8192, height: 8192}\n"
                         "  b: {type: txt2img, model: tiny:sd15, width: 1024, height: 1024, num_images: 64}\n"
                         "  c: {type: txt2img, model: tiny:sd15, width: 1024, height: 1024, num_images: 32}\n")
    result = cli("validate", path)
    assert_clean(result)
    assert result.status == 2 and "2 problems found" in result.err, result.err
    assert f"{path}:3:40: nodes.a.width: 8192 x 8192 is 64 MP in one call, more than the budget of 32 MP" in result.err
    assert f"{path}:4:67: nodes.b.num_images: 1024 x 1024 x 64 images is 64 MP" in result.err


PIXEL_BUDGET = "RUNNER_MAX_GENERATION_PIXELS"


@pytest.mark.parametrize("value", ["32MP", "-1", "0", "nan", "1e9", "33554432.0", "9" * 50])
def test_a_malformed_pixel_budget_variable_is_an_error_naming_it(folder, monkeypatch, value):
    """The variable was read by int() when the node checks were imported: '32MP' or 'nan' was a traceback of every
    command, '-1' a budget that refused every generation ("more than the budget of -0 MP")."""
    monkeypatch.setenv(PIXEL_BUDGET, value)
    path = write(folder, "version: 1\nnodes:\n  a: {type: txt2img, model: tiny:sd15, width: 512, height: 512}\n")
    result = cli("validate", path)
    assert result.status == 2 and "Traceback" not in result.err, result.err
    shown = value if len(value) <= 40 else value[:30] + f"... ({len(value)} characters)"
    assert result.err.startswith(f"error: {PIXEL_BUDGET}={shown!r}: the environment variable is not a whole number of "
                                 "pixels from 1 to 10^18\n    fix: set it to the pixels one generation call may make, e.g. "
                                 f"{PIXEL_BUDGET}=67108864 (64 MP), or unset it for the default of 33,554,432 (32 MP)\n"), \
        result.err
    assert result.cpu < 1.0


def test_the_pixel_budget_variable_sets_the_budget(folder, monkeypatch):
    path = write(folder, "version: 1\nnodes:\n  a: {type: txt2img, model: tiny:sd15, width: 8192, height: 8192}\n"
                         "  c: {type: txt2img, model: tiny:sd15, width: 1024, height: 1024, num_images: 32}\n")
    monkeypatch.setenv(PIXEL_BUDGET, str(64 * 2**20))  # 8192 x 8192 fits
    assert cli("validate", path).status == 0
    monkeypatch.setenv(PIXEL_BUDGET, " 16_777_216 ")  # 16 MP, as int() reads it
    result = cli("validate", path)
    assert_clean(result)
    assert result.status == 2 and "2 problems found" in result.err, result.err
    assert f"{path}:4:67: nodes.c.num_images: 1024 x 1024 x 32 images is 32 MP in one call, more than the budget of 16 MP " \
           f"({PIXEL_BUDGET})" in result.err
    monkeypatch.setenv(PIXEL_BUDGET, "1000")
    assert "more than the budget of 1,000 pixels" in cli("validate", path).err
    monkeypatch.setenv(PIXEL_BUDGET, "")  # empty: the default
    assert "more than the budget of 32 MP" in cli("validate", path).err
    # a real process, for the exit status and stderr a user sees (the variable was read when the module was imported)
    process = subprocess.run([sys.executable, "-m", "runner", "validate", str(path)], capture_output=True, text=True,
                             env={**os.environ, PIXEL_BUDGET: "32MP"}, timeout=120)
    assert process.returncode == 2 and "Traceback" not in process.stderr, process.stderr
    assert process.stderr.startswith(f"error: {PIXEL_BUDGET}='32MP': the environment variable is not a whole number")

def test_the_safety_page_states_every_limit():
    section = (REPO / "docs" / "safety.md").read_text().split("\n## Security", 1)[0]
    for stated in ("1 MiB", f"{MAX_DEPTH} levels", f"{MAX_VALUES:,} values", f"{MAX_STRING:,} characters", "64 bits",
                   f"{MAX_NODES:,} nodes", f"{MAX_PARAMS:,} params", f"{MAX_GENERATION_PIXELS:,} pixels"):
        assert stated in section, stated


# ----------------------------------------------------------------- properties: mutated recipes

CONTROL = [chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127, *range(0x80, 0x85), *range(0x86, 0xA0), 0xFFFE, 0xFFFF)]
FRAGMENTS = [
    b"&a [*a]", b"&b {x: *b}", b"<<: 3", b"<<: [1]", b"{<<: *nowhere}", b"<<: *a", b"&a", b"*a", b"*undefined",
    b"!!python/object/apply:os.system [ls]", b"!!int abc", b"!!float x", b"!!bool maybe", b"!!binary AAAA", b"!!set {a}",
    b"!!timestamp 2001-12-14", b"!<tag:yaml.org,2002:int> 1", b"!local x", b"? [a, b]\n: c", b"? a\n", b"- - - -",
    b"[" * 80, b"{" * 80, b"]" * 5, b"}", b"'", b'"', b'"\\x00"', b'"\\ud800"', b'"\\U0010ffff"', b'"\\q"', b"|\n  block",
    b">-\n", b"|9\n", b"\t", b"\r", b"\r\n", b"\n", b"\xef\xbb\xbf", b"\xff", b"\xc3\x28", b"\xe2\x80\xa8", b"\xc2\x85",
    b"---\n", b"...\n", b"%YAML 1.1\n", b"%TAG ! tag:x,2000:\n", b"#", b": ", b", ", b"- ", b"@", b"`", b"=",
    b"$params.nope", b"${params.", b"${params.prompt}", b"$$", b"$nowhere.image", b"9" * 5000, b"-0x" + b"f" * 80,
    b"0b" + b"1" * 70, b"1:2:3:4:5:6:7:8:9:10:11:12:13:14:15", b".inf", b"-.inf", b".nan", b"1e999", b"0o777", b"~", b"null",
    b"true", b"2001-12-14t21:59:43.10-05:00", "é😀\u202e".encode(), b"x" * 70_000,
]
positions = st.integers(min_value=0, max_value=1 << 16)
BOMB_LEVELS = (1, 2, 3, 6, 9)  # small ones parse, big ones are refused at once; 4 and 5 (7,000 and 66,000 values) only cost time
VALUE_LINE = re.compile(rb"^( *)([A-Za-z_][\w-]*): +(\S.*)$", re.M)
NUMBER = re.compile(rb"\b\d+\b")


def deep_value(depth: int, form: str, indent: int) -> bytes:
    if form == "flow-seq":
        return b"[" * depth + b"1" + b"]" * depth
    if form == "flow-map":
        return b"{a: " * depth + b"1" + b"}" * depth
    if form == "block-seq":
        return b"\n" + b" " * (indent + 2) + b"- " * depth + b"1"
    return nested_block(min(depth, 400), indent + 2).encode()


def mutate(data: bytes, mutation: tuple) -> bytes:
    kind, *args = mutation
    pos = args[0] % (len(data) + 1) if args else 0
    if kind == "flip":
        return data[:pos] + bytes([args[1]]) + data[pos + 1:]
    if kind == "control":
        return data[:pos] + args[1].encode("utf-8") + data[pos:]
    if kind == "truncate":
        return data[:pos]
    if kind == "delete":
        return data[:pos] + data[pos + args[1]:]
    if kind in ("splice", "bytes"):
        return data[:pos] + args[1] + data[pos:]
    if kind == "value":
        lines = list(VALUE_LINE.finditer(data))
        if not lines:
            return data
        line = lines[args[0] % len(lines)]
        return data[:line.start(3)] + args[1].encode("utf-8", errors="surrogatepass") + data[line.end(3):]
    if kind == "deep":
        lines = list(VALUE_LINE.finditer(data))
        if not lines:
            return data + b"\ndeep: " + deep_value(args[1], args[2], 0)
        line = lines[args[0] % len(lines)]
        return data[:line.start(3)] + deep_value(args[1], args[2], len(line.group(1))) + data[line.end(3):]
    if kind == "bigint":
        numbers = list(NUMBER.finditer(data))
        digits = (b"-" if args[2] else b"") + b"9" * args[1]
        if not numbers:
            return data + b"\nseed: " + digits
        number = numbers[args[0] % len(numbers)]
        return data[:number.start()] + digits + data[number.end():]
    if kind == "bomb":
        return data + b"\nbomb:\n" + alias_bomb(args[0]).encode()
    raise AssertionError(kind)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=8).map(json.dumps)  # JSON is YAML: typed values that parse, for the fields to judge
byte_level = st.one_of(
    st.tuples(st.just("flip"), positions, st.integers(0, 255)),
    st.tuples(st.just("control"), positions, st.sampled_from(CONTROL)),
    st.tuples(st.just("bytes"), positions, st.binary(min_size=1, max_size=24)),
)
structural = st.one_of(
    st.tuples(st.just("value"), positions, json_values),
    st.tuples(st.just("truncate"), positions),
    st.tuples(st.just("delete"), positions, st.integers(1, 60)),
    st.tuples(st.just("splice"), positions, st.sampled_from(FRAGMENTS)),
    st.tuples(st.just("deep"), positions, st.integers(MAX_DEPTH - 8, 6000), st.sampled_from(["flow-seq", "flow-map", "block-seq",
                                                                                              "block-map"])),
    st.tuples(st.just("bigint"), positions, st.integers(15, 6000), st.booleans()),
    st.tuples(st.just("bomb"), st.sampled_from(BOMB_LEVELS)),
)
mutations = st.one_of(structural, structural, byte_level)  # most mutants should get past the reader, to the fields
FUZZ = settings(max_examples=80, deadline=timedelta(seconds=30), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(recipe=st.sampled_from(sorted(RECIPES)), changes=st.lists(mutations, min_size=1, max_size=4),
       command=st.sampled_from(["validate", "validate", "dry-run"]))
def test_mutated_recipes_exit_0_or_2_with_located_problems(folder, recipe, changes, command):
    data = RECIPES[recipe]
    for change in changes:
        data = mutate(data, change)
    path = write(folder, data, "fuzz.yaml")
    args = ("validate", path) if command == "validate" else ("run", "--dry-run", "--out", folder / "out", path)
    assert_clean(cli(*args))


override_values = st.one_of(
    json_values,
    st.sampled_from([fragment.decode("utf-8", errors="surrogateescape") for fragment in FRAGMENTS]),
    st.text(max_size=40),
    st.builds(lambda depth: nested_flow(depth), st.integers(MAX_DEPTH - 8, 3000)),
    st.builds(lambda digits, sign: sign + "7" * digits, st.integers(15, 6000), st.sampled_from(["", "-", "+", "0x"])),
    st.builds(lambda levels: "{" + alias_bomb(levels, "").replace("\n", ", ").rstrip(", ") + "}", st.sampled_from(BOMB_LEVELS)),
)
override_paths = st.one_of(
    st.sampled_from(["params.prompt", "seed", "name", "version", "device", "nodes.image.steps", "nodes.image", "nodes.save.name",
                     "nodes.image.prompt", "models.sd15", "params", "nodes", "sweep", "nodes.image.size[1]", "nodes.image.x[0].y"]),
    st.text(alphabet="abcnodesparm._[]0123456789²", min_size=1, max_size=30),
)


@FUZZ
@given(overrides=st.lists(st.tuples(override_paths, override_values), min_size=1, max_size=3),
       command=st.sampled_from(["validate", "dry-run"]))
def test_odd_set_values_exit_0_or_2_with_located_problems(folder, overrides, command):
    sets = [f"--set={path}={value}" for path, value in overrides]
    recipe = folder / "txt2img.yaml"
    args = ("validate", recipe) if command == "validate" else ("run", "--dry-run", "--out", folder / "out", recipe)
    assert_clean(cli(*args, *sets))


# ----------------------------------------------------------------- real processes: the exit status and stderr a user sees

def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # an alias bomb used to need 2-4 GB


@pytest.mark.parametrize("name, data, args, expected", [
    pytest.param("nul", BASE + "params: {p: x}\x00\n", (), ":4:15: a NUL byte", id="nul-byte"),
    pytest.param("bomb", BASE + "params:\n" + alias_bomb(9), ("--dry-run",), f":9:37: more than {MAX_VALUES:,} values",
                 id="billion-laughs-dry-run"),
    pytest.param("deep-set", WITH_P, ("--dry-run", "--set", "params.p=" + nested_flow(10_000)),
                 shown_option("params.p=" + nested_flow(10_000)), id="nesting-by-set-dry-run"),
    pytest.param("non-utf8-set", WITH_P, ("--set", b"params.p=caf\xe9".decode("utf-8", errors="surrogateescape")),
                 "character U+DCE9", id="non-utf8-set-argument"),
])
def test_real_process_exits_2_with_a_located_message(folder, name, data, args, expected):
    path = write(folder, data, f"{name}.yaml")
    command = ["run", "--out", str(folder / "out")] if "--dry-run" in args else ["validate"]
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "runner", *command, str(path), *args], capture_output=True, timeout=60,
                             preexec_fn=_limit_memory, cwd=REPO)
    seconds = time.perf_counter() - started
    stderr = process.stderr.decode("utf-8", errors="replace")
    assert process.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr and expected in stderr.splitlines()[0], stderr[-3000:]
    assert seconds < 30


HOSTILE_HEADERS = {
    "nested-100000-deep": b"[" * 100_000 + b"]" * 100_000,
    "a-list": b"[1, 2, 3]",
    "a-string-shape": b'{"a": {"dtype": "F32", "shape": ["x"], "data_offsets": [0, 4]}}',
    "an-infinite-shape": b'{"a": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 4]}}',
    "a-negative-shape": b'{"a": {"dtype": "F32", "shape": [-5], "data_offsets": [0, 4]}}',
    "metadata-not-text": b'{"__metadata__": {"format": [1]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
    "90-mb-of-header": b'{"a": "' + b"x" * (90 << 20) + b'"}',
}


@pytest.mark.parametrize("name", HOSTILE_HEADERS)
def test_hostile_safetensors_headers_are_refused_in_bounded_time_and_memory(folder, name):
    """A .safetensors header is read bounded (size), parsed without a traceback (depth), and checked in shape before
    anything multiplies its shapes: validate (and a dry run, which estimates memory from the shapes) exit 2."""
    import struct

    data = HOSTILE_HEADERS[name]
    (folder / "bad.safetensors").write_bytes(struct.pack("<Q", len(data)) + data + b"\0" * 8)
    path = write(folder, "version: 1\nnodes:\n  g: {type: txt2img, model: ./bad.safetensors}\n")
    for args in (("validate", path), ("run", "--dry-run", "--out", folder / "out", path)):
        result = cli(*args)
        assert_clean(result)
        assert result.status == 2 and "is not a readable safetensors file" in result.err, result.err[-2000:]


@pytest.mark.parametrize("variable", ["RUNNER_MAX_PIXELS", "RUNNER_MAX_INPUT_PIXELS", "RUNNER_MAX_INPUT_BYTES"])
def test_every_limit_variable_is_read_safely_and_obeyed(folder, monkeypatch, variable):
    """These were read by int() at import: '32MP' made every command a traceback. A malformed value now stops every
    command (and a Session) at its start with the variable's name and the fix; a valid one is obeyed where it is
    used, also when set after import."""
    from runner import Session
    from runner.core.errors import CommandError
    from runner.core.limits import LIMITS

    from PIL import Image

    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(folder / "in.png")  # noise: 12 kB as PNG
    path = write(folder, "version: 1\nnodes:\n  a: {type: load_image, path: in.png}\n"
                         "  g: {type: grid, images: [$a, $a], cols: 2}\n")
    for value in ("32MP", "-1", "0", "nan", "1e9"):
        monkeypatch.setenv(variable, value)
        result = cli("validate", path, trace=False)
        assert result.status == 2 and "Traceback" not in result.err, result.err
        assert result.err.startswith(f"error: {variable}={value!r}: the environment variable is not a whole number of "
                                     f"{LIMITS[variable][1]} from 1 to 10^18\n    fix: set it to "), result.err
        with pytest.raises(CommandError):
            Session(out=folder / "out")
    monkeypatch.setenv(variable, "1000")  # smaller than the 64 x 64 input (4,096 pixels, its bytes) or the grid
    result = cli("run", "--out", folder / "out", "--no-cache", path, trace=False)
    # the file's size is known at validate (2), the pixels when a node reads or makes them (1)
    assert result.status == (2 if variable == "RUNNER_MAX_INPUT_BYTES" else 1) and f"raise {variable}" in result.err
    assert "0 MiB" not in result.err and "0 MP" not in result.err, result.err
    monkeypatch.delenv(variable)
    assert cli("run", "--out", folder / "out", "--no-cache", path, trace=False).status == 0
