"""The commands that need no model: validate, schema, nodes, graph; the example recipes in workflows/."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from runner.cli import main
from runner.language.fields import nested_models as _nested_models
from runner.engine.loading import load_workflow
from runner.language.errors import dotted
from runner.language.fields import ModelField, iter_marked
from runner.nodes import NODE_TYPES
from runner.schema import schema_text, workflow_json_schema

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"
DEMO = "workflows/demo.yaml"
SCHEMA_FILE = REPO / "schemas" / "workflow.schema.json"
RECIPES = sorted(path.name for path in WORKFLOWS.glob("*.yaml"))
HEAVY = ("torch", "diffusers", "transformers")


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)
    return REPO


def cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def edges_of(workflow) -> list[tuple[str, str, str]]:
    """(source, target, 'output -> field') for every link, computed from the declarations."""
    edges = []
    for node in workflow.nodes.values():
        for link, _accepts, path in node.links():
            output = link.output or workflow.nodes[link.node].type.default_output
            edges.append((link.node, node.id, f"{output} -> {'.'.join(str(p) for p in path)}"))
    return edges


# --------------------------------------------------------------------- validate

def test_validate_demo_prints_one_line_summary(in_repo, capsys):
    status, out, err = cli(capsys, "validate", DEMO)
    assert status == 0, err
    assert err == ""
    assert re.fullmatch(
        r"OK workflows/demo\.yaml: workflow 'demo', 7 nodes \(img2img, inpaint, load_image, make_mask, save_image, txt2img\), "
        r"1 model, 3 params \[\d+ ms\]\n", out), out


def test_set_overrides_are_applied(in_repo, capsys):
    status, out, err = cli(capsys, "validate", DEMO, "--set", "nodes.generated.steps=3", "--set", "params.prompt=a red barn")
    assert status == 0, err
    assert out.startswith("OK workflows/demo.yaml: ")
    workflow = load_workflow(DEMO, ["nodes.generated.steps=3", "params.prompt=a red barn", "params.steps=5",
                                    "models.sd15=tiny:sdxl", "nodes.room.size=[32, 48]"])
    assert workflow.nodes["generated"].fields.steps == 3
    assert workflow.nodes["restyled"].fields.steps == 5  # $params.steps after the override
    assert workflow.nodes["generated"].fields.prompt == "a red barn, photorealistic"
    assert workflow.models["sd15"].source == "tiny:sdxl"
    assert tuple(workflow.nodes["room"].fields.size) == (32, 48)
    assert workflow.document["nodes"]["generated"]["steps"] == 3  # what the file now says, recorded for the run
    assert workflow.overrides[0] == "nodes.generated.steps=3"


def test_set_override_rewires_the_graph(in_repo, capsys):
    status, out, err = cli(capsys, "graph", DEMO, "--format", "mermaid", "--set", "nodes.final.image=$restyled")
    assert status == 0, err
    assert "    restyled -->|image -> image| final\n" in out
    assert "fixed -->|image -> image| final" not in out
    status, out, err = cli(capsys, "graph", DEMO, "--set", "nodes.final.image=$generated")
    assert status == 0, err
    generated = out.index("generated (txt2img)")
    assert out.index("final (save_image)") > generated


def test_set_override_can_create_a_cycle(in_repo, capsys):
    status, _, err = cli(capsys, "validate", DEMO, "--set", "nodes.restyled.image=$fixed")
    assert status == 2
    # located at the link that closes it (the file's, or the override's)
    assert re.search(r"(workflows/demo\.yaml:\d+:\d+: nodes\.fixed\.image|--set nodes.restyled.image=\$fixed: "
                     r"nodes\.restyled\.image): the nodes form a cycle: (fixed -> restyled -> fixed; this link "
                     r"\(\$restyled\)|restyled -> fixed -> restyled; this link \(\$fixed\)) closes it", err), err


# ------------------------------------------------------------------------ graph

@pytest.mark.parametrize("name", RECIPES)
def test_graph_text_shows_every_node_and_edge(name, in_repo, capsys):
    workflow = load_workflow(WORKFLOWS / name)
    status, out, err = cli(capsys, "graph", f"workflows/{name}")
    assert status == 0, err
    assert out.startswith(f"{workflow.name} ({len(workflow.nodes)} nodes)")
    for node_id, node in workflow.nodes.items():
        assert f"{node_id} ({node.type.name})" in out
    lines = out.splitlines()
    for source, target, label in edges_of(workflow):
        # the dependent is drawn below its source with the link label on its own line
        assert any(f"{target} ({workflow.nodes[target].type.name})" in line and label in line for line in lines), (label, out)


@pytest.mark.parametrize("name", RECIPES)
def test_graph_mermaid_shows_every_node_and_edge(name, in_repo, capsys):
    workflow = load_workflow(WORKFLOWS / name)
    status, out, err = cli(capsys, "graph", f"workflows/{name}", "--format", "mermaid")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    for node_id, node in workflow.nodes.items():
        assert f'    {node_id}["{node_id}<br/><small>{node.type.name}</small>"]' in lines
    edges = edges_of(workflow)
    for source, target, label in edges:
        assert f"    {source} -->|{label}| {target}" in lines
    assert len(lines) == 1 + len(workflow.nodes) + len(set(edges))


# ------------------------------------------------------------------------ nodes

def test_nodes_lists_every_type(capsys):
    status, out, err = cli(capsys, "nodes")
    assert status == 0, err
    for name in NODE_TYPES:
        assert re.search(rf"\b{name}\b", out), name
    assert "runner nodes TYPE" in out


@pytest.mark.parametrize("type_name", list(NODE_TYPES))
def test_nodes_type_shows_every_field_with_its_description(type_name, capsys):
    status, out, err = cli(capsys, "nodes", type_name)
    assert status == 0, err
    node_type = NODE_TYPES[type_name]
    lines = out.splitlines()
    models = [node_type.fields, *_nested_models(node_type.fields).values()]
    for model in models:
        for name, info in model.model_fields.items():
            field_name = info.alias or name
            assert any(line.strip().startswith(field_name + " ") for line in lines), (field_name, out)
            assert info.description, f"{type_name}.{field_name} has no description"
            assert info.description in out, (field_name, info.description)
    for output in node_type.outputs:
        assert output in out.split("outputs")[-1]


def test_nodes_txt2img_in_detail(capsys):
    status, out, _ = cli(capsys, "nodes", "txt2img")
    assert status == 0
    for expected in ("steps", "num_inference_steps; default: the pipeline's", ">= 1, <= 1000", "multiple of 8",
                     "controlnet: each item", "control_guidance_start", "lora: each item", "dpmpp_2m_karras",
                     "outputs: image: image (default), images: images, latents: latents"):
        assert expected in out, expected


def test_nodes_type_all_lists_every_pipeline_class_default_the_default_view_only_the_families(capsys):
    """Issue 27 item 11: the default view names the classes of the families runner runs the node on (five per value,
    the rest counted); --all names every class the task's AutoPipelines derive, none left out."""
    def classes(text: str) -> set[str]:
        return set(re.findall(r"\b[A-Z][A-Za-z0-9]*Pipeline\b", text))

    status, short, _ = cli(capsys, "nodes", "txt2img")
    assert status == 0
    status, every, _ = cli(capsys, "nodes", "txt2img", "--all")
    assert status == 0
    steps = next(line for line in short.splitlines() if line.strip().startswith("steps "))
    assert "StableDiffusionPipeline" in steps and "FluxPipeline" in steps and "PixArtAlphaPipeline" not in steps, steps
    assert len(steps) < 400, steps
    every_steps = next(line for line in every.splitlines() if line.strip().startswith("steps "))
    assert {"StableDiffusionPipeline", "FluxPipeline", "PixArtAlphaPipeline", "SanaPipeline"} <= classes(every_steps)
    assert len(classes(every)) > 2 * len(classes(short)), (classes(short), classes(every))
    assert classes(short) < classes(every)
    assert re.search(r"and \d+ more", short) and not re.search(r"and \d+ more", every)


def test_nodes_all_without_a_type_says_to_name_one(capsys):
    status, out, err = cli(capsys, "nodes", "--all")
    assert status == 2 and out == ""
    assert "--all lists one node type's pipeline defaults" in err and "runner nodes txt2img --all" in err, err


@pytest.mark.parametrize("typo, suggestion", [("txt2imag", "txt2img"), ("inpainting", "inpaint"), ("save", "save_image")])
def test_nodes_unknown_type_suggests(typo, suggestion, capsys):
    status, out, err = cli(capsys, "nodes", typo)
    assert status == 2
    assert out == ""
    assert f"unknown node type '{typo}' (did you mean '{suggestion}'?)" in err
    assert "Traceback" not in err


def test_nodes_unknown_type_without_close_match(capsys):
    status, _, err = cli(capsys, "nodes", "nope")
    assert status == 2
    assert "unknown node type 'nope'" in err and "runner nodes" in err


# ----------------------------------------------------------------------- schema

def test_schema_command_equals_committed_file(capsys):
    status, out, err = cli(capsys, "schema")
    assert status == 0, err
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert out == committed, "schemas/workflow.schema.json is stale: run `runner schema --out schemas/workflow.schema.json`"


def test_schema_out_writes_the_same_text(tmp_path, capsys):
    target = tmp_path / "nested" / "schema.json"
    status, out, _ = cli(capsys, "schema", "--out", target)
    assert status == 0
    assert target.read_text(encoding="utf-8") == SCHEMA_FILE.read_text(encoding="utf-8")
    assert f"wrote {target}" in out


def test_schema_follows_the_declarations(monkeypatch):
    """The committed-file comparison catches declaration changes: adding a node type changes the text."""
    from runner.nodes.base import NodeType
    from runner.nodes.images import Canny

    before = schema_text()
    assert before == SCHEMA_FILE.read_text(encoding="utf-8")
    monkeypatch.setitem(NODE_TYPES, "edges2", NodeType("edges2", Canny, {"image": "image"}, 1, "Edges again.", lambda *a: {}))
    after = schema_text()
    assert after != before
    assert '"edges2"' in after


def test_schema_is_draft07_and_accepts_every_recipe():
    schema = workflow_json_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == schema
    for name in RECIPES:
        document = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(document)]
        assert not errors, (name, errors)


def test_schema_rejects_what_validate_rejects():
    validator = jsonschema.Draft7Validator(workflow_json_schema())
    good = {"version": 1, "params": {"n": 3, "w": 64},
            "nodes": {"room": {"type": "load_image", "path": "a.png", "size": ["$params.w", 64]},
                      "gen": {"type": "txt2img", "model": "tiny:sd15", "steps": "$params.n"}}}
    assert not list(validator.iter_errors(good))
    for bad in (
        {"version": 2, "nodes": good["nodes"]},
        {"version": 1, "nodes": {}},
        {"version": 1, "nodes": {"gen": {"type": "txt2img", "model": "m", "stpes": 3}}},
        {"version": 1, "nodes": {"gen": {"type": "txt2imgg", "model": "m"}}},
        {"version": 1, "nodes": {"gen": {"type": "txt2img", "model": "m", "scheduler": "eulerr"}}},
        {"version": 1, "nodes": {"gen": {"type": "txt2img", "model": "m", "steps": "many"}}},
        {"version": 1, "nodes": {"Bad-Id": {"type": "canny", "image": "$room"}}},
        {"version": 1, "nodes": {"params": {"type": "canny", "image": "$room"}}},
        {"version": 1, "params": {"bad name": 1}, "nodes": good["nodes"]},
        {"version": 1, "nodes": {"save": {"type": "save_image", "image": "room"}}},
        {"version": 1, "nodes": {"a": {"type": "load_image"}}, "extra": 1},
    ):
        assert list(validator.iter_errors(bad)), bad


# --------------------------------------------------------- no heavy imports

LIGHT_COMMANDS = [
    ["validate", DEMO],
    ["validate", DEMO, "--set", "nodes.generated.steps=3"],
    ["schema"],
    ["nodes"],
    ["nodes", "txt2img"],
    ["graph", DEMO],
    ["graph", DEMO, "--format", "mermaid"],
    ["validate", "workflows/room_makeover.yaml"],
]


@pytest.mark.parametrize("argv", LIGHT_COMMANDS, ids=[" ".join(a) for a in LIGHT_COMMANDS])
def test_light_commands_do_not_import_torch(argv):
    code = (
        "import sys, runner.cli\n"
        f"rc = runner.cli.main({argv!r})\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "assert not heavy, heavy[:5]\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_python_m_runner_validate_import_time():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "validate", DEMO],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK workflows/demo.yaml: ")
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "runner.cli" in imported and "yaml" in imported
    heavy = [name for name in imported if name.split(".")[0] in HEAVY]
    assert not heavy, heavy[:5]


def test_python_m_runner_exit_status_for_invalid(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nnodes:\n  a: {type: txt2imgg}\n")
    result = subprocess.run([sys.executable, "-m", "runner", "validate", str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"{bad}:3:7: nodes.a.type: unknown node type 'txt2imgg' (did you mean 'txt2img'?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_unsafe_yaml_loading_in_the_source():
    pattern = re.compile(r"yaml\.(load|unsafe_load|full_load|load_all|unsafe_load_all|full_load_all)\s*\(|"
                         r"yaml\.(Loader|UnsafeLoader|FullLoader)\b|\b(UnsafeLoader|FullLoader)\b")
    offenders = []
    sources = sorted((REPO / "runner").rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, offenders


# ------------------------------------------------------------------- scale

def twenty_nodes() -> str:
    lines = ["version: 1", "name: twenty", "params: {prompt: a lighthouse, strength: 0.5}",
             "models: {sd15: tiny:sd15, cn: tiny:controlnet-sd15, depth: tiny:dpt}", "nodes:",
             "  photo: {type: load_image, path: inputs/room.png, size: [64, 64]}",
             "  depth: {type: estimate_depth, image: $photo, model: $models.depth}",
             "  edges: {type: canny, image: $photo}",
             "  mask: {type: make_mask, like: $photo, shapes: [{rect: [8, 8, 40, 40]}], grow: 2}",
             "  base: {type: txt2img, model: $models.sd15, prompt: '${params.prompt}', steps: 2, width: 64, height: 64,"
             " controlnet: [{model: $models.cn, image: $depth, end: 0.8}, {model: $models.cn, image: $edges}]}"]
    previous = "base"
    for index in range(6):
        lines.append(f"  step{index}: {{type: img2img, model: $models.sd15, image: ${previous}, strength: $params.strength, steps: 2}}")
        previous = f"step{index}"
    lines += [
        f"  fixed: {{type: inpaint, model: $models.sd15, image: ${previous}, mask: $mask, steps: 2}}",
        "  ref: {type: refine, model: $models.sd15, image: $fixed, strength: 0.3}",
        "  sheet: {type: grid, images: [$photo, $depth, $edges, $mask, $base, $fixed, $ref], cols: 4}",
        "  big: {type: upscale, image: $sheet, scale: 2}",
        "  save_big: {type: save_image, image: $big}",
        "  save_all: {type: save_image, images: [$step0, $step1, $step2]}",
        "  save_ref: {type: save_image, image: $ref, name: ref.png}",
        "  depth_mask: {type: make_mask, from: $depth, threshold: 100, blur: 2}",
        "  save_mask: {type: save_image, image: $depth_mask}",
    ]
    return "\n".join(lines) + "\n"


def test_twenty_node_workflow_validates(tmp_path, capsys):
    path = tmp_path / "twenty.yaml"
    path.write_text(twenty_nodes())
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "room.png").write_bytes((REPO / "workflows" / "inputs" / "room.png").read_bytes())
    workflow = load_workflow(path)
    assert len(workflow.nodes) == 20
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        status, out, err = cli(capsys, "validate", path)
        best = min(best, time.perf_counter() - started)
        assert status == 0, err
    assert "20 nodes" in out
    with capsys.disabled():
        print(f"\n[timing] runner validate, 20-node workflow, in-process: best of 3 = {best * 1000:.1f} ms")


# ----------------------------------------------------------------- recipes

# hub ids each recipe must use (written as users would; tests swap them for tiny: models)
RECIPE_MODELS = {
    "txt2img.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5"},
    "controlnet_pose.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5", "lllyasviel/control_v11p_sd15_openpose"},
    "img2img.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5"},
    "img2img_controlnet_depth.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5", "Intel/dpt-hybrid-midas",
                                      "lllyasviel/control_v11f1p_sd15_depth"},
    "inpaint.yaml": {"stable-diffusion-v1-5/stable-diffusion-inpainting"},
    "inpaint_controlnet.yaml": {"stable-diffusion-v1-5/stable-diffusion-inpainting", "lllyasviel/control_v11p_sd15_canny"},
    "depth2img.yaml": {"stabilityai/stable-diffusion-2-depth", "Intel/dpt-hybrid-midas"},
    "sdxl_refiner.yaml": {"stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-refiner-1.0"},
    "sdxl_turbo.yaml": {"stabilityai/sdxl-turbo"},
    "kandinsky22.yaml": {"kandinsky-community/kandinsky-2-2-decoder"},
    "canny_controlnet.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5", "lllyasviel/control_v11p_sd15_canny"},
    "room_makeover.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5", "lllyasviel/control_v11f1p_sd15_depth",
                           "Intel/dpt-hybrid-midas", "stabilityai/stable-diffusion-xl-refiner-1.0"},
    "grid_upscale.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5"},
    "pipeline_node.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5"},
    "pose_controlnet.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5", "lllyasviel/control_v11p_sd15_openpose",
                             "usyd-community/vitpose-base-simple", "PekingU/rtdetr_r50vd_coco_o365"},
    "sd3.yaml": {"stabilityai/stable-diffusion-3-medium-diffusers", "InstantX/SD3-Controlnet-Canny"},
    "flux.yaml": {"black-forest-labs/FLUX.1-dev", "InstantX/FLUX.1-dev-Controlnet-Canny"},
    "kandinsky21.yaml": {"kandinsky-community/kandinsky-2-1", "kandinsky-community/kandinsky-2-1-inpaint"},
    "kandinsky22_controlnet.yaml": {"kandinsky-community/kandinsky-2-2-decoder",
                                    "kandinsky-community/kandinsky-2-2-controlnet-depth", "Intel/dpt-large"},
    "kandinsky3.yaml": {"kandinsky-community/kandinsky-3"},
    "hires_fix.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5"},
    "textual_inversion.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5", "sayakpaul/EasyNegative-test"},
    "weighted_prompts.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5"},
    "quality_knobs.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-inpainting"},
    "t2i_adapter.yaml": {"stabilityai/stable-diffusion-xl-base-1.0", "TencentARC/t2i-adapter-canny-sdxl-1.0"},
    "ip_adapter.yaml": {"stable-diffusion-v1-5/stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-inpainting",
                        "h94/IP-Adapter"},
}
EXAMPLES = sorted(RECIPE_MODELS)

# The `# offline:` command of a recipe swaps its models for tiny ones and nothing else: sizes come from the model
# (SD/SDXL checkpoints), from the input image (img2img, inpaint, depth2img) or from the ControlNet condition image,
# so tiny models run every recipe at 64-512 px as written. The only exceptions, and why:
OFFLINE_EXCEPTIONS: dict[str, list[str]] = {
    # FLUX makes 1024 px images whatever its checkpoint or inputs say, unless given a size: the recipe gives it as a
    # param, which the offline run sets to 64 (1024 px on a tiny model is seconds a step, for nothing)
    "flux.yaml": ["params.size=64"],
    # Kandinsky 3 likewise makes 1024 px images unless given a size
    "kandinsky3.yaml": ["params.size=64"],
}


def test_every_recipe_is_present():
    # every file in workflows/ but the demo (which runs offline as it is) is a recipe with real hub models
    assert set(EXAMPLES) == set(RECIPES) - {"demo.yaml"}
    assert set(OFFLINE_EXCEPTIONS) <= set(EXAMPLES)


def test_recipes_cover_the_node_catalogue():
    used = set()
    for name in RECIPES:
        used |= {node.type.name for node in load_workflow(WORKFLOWS / name).nodes.values()}
    missing = sorted(set(NODE_TYPES) - used)
    assert not missing, (f"no recipe uses node type(s) {', '.join(missing)}: add workflows/NAME.yaml using it, written for "
                         "real hub models, with a '# offline:' comment giving the --set models.X=tiny:... swaps that run "
                         "it here, and list its hub ids in EXAMPLES above (see docs/architecture.md)")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates(name, in_repo, capsys):
    status, out, err = cli(capsys, "validate", f"workflows/{name}")
    assert status == 0, err
    assert out.startswith(f"OK workflows/{name}: ")


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_shape(name):
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../schemas/workflow.schema.json"
    workflow = load_workflow(WORKFLOWS / name)
    document = yaml.safe_load(text)
    assert document.get("description", "").strip(), "a recipe says what it does"
    assert document.get("models"), "models are named so that --set models.X=... swaps them"
    for node_id, node in workflow.nodes.items():
        # every model a node uses is named under models: (defaults such as estimate_depth's are spelled out)
        for value, _marker, path in iter_marked(node.fields, ModelField):
            written = document["nodes"][node_id]
            for part in path:
                written = written[part] if isinstance(written, (dict, list)) and (
                    isinstance(written, list) or part in written) else None
            assert isinstance(written, str) and written.startswith("$models."), (node_id, dotted(path), written)
    for node in workflow.nodes.values():
        path = getattr(node.fields, "path", None)
        if node.type.name == "load_image" and path:
            file = WORKFLOWS / path
            assert path.startswith("inputs/") and file.is_file(), path
            assert file.stat().st_size < 20_000, (path, file.stat().st_size)


@pytest.mark.parametrize("name", EXAMPLES)
def test_recipe_uses_real_hub_models(name):
    workflow = load_workflow(WORKFLOWS / name)
    sources = {entry.source for entry in workflow.models.values()}
    sources |= {value for entry in workflow.models.values() for value in entry.embeddings.values()}
    assert RECIPE_MODELS[name] <= sources, sources
    assert not any(source.startswith("tiny:") for source in sources)


def offline_overrides(name: str) -> list[str]:
    """The --set values of the recipe's '# offline: runner run ...' comment."""
    lines = (WORKFLOWS / name).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if "offline:" in line)
    command = lines[start].split("offline:", 1)[1]
    for line in lines[start + 1:]:
        rest = line.lstrip("#").strip()
        if not line.startswith("#") or not rest.startswith("--set"):
            break
        command += " " + rest
    words = shlex.split(command)
    assert words[:3] == ["runner", "run", f"workflows/{name}"], words[:3]
    return [words[i + 1] for i, word in enumerate(words) if word == "--set"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_recipe_offline_command_only_swaps_models(name):
    overrides = offline_overrides(name)
    others = [override for override in overrides if not override.startswith("models.")]
    assert others == OFFLINE_EXCEPTIONS.get(name, []), (
        "an offline command may only set models.NAME=tiny:...; leave sizes and steps to the model and the inputs")
    for override in overrides:
        if override.startswith("models."):
            key, _, value = override.partition("=")
            # a whole entry, or the models inside one: its source, an embedding
            assert value.startswith("tiny:"), override
            assert (key.count(".") == 1 or key.split(".")[2:3] == ["source"] and key.count(".") == 2
                    or key.split(".")[2:3] == ["embeddings"] and key.count(".") == 3), override


@pytest.mark.parametrize("name", EXAMPLES)
def test_recipe_offline_command_swaps_every_model_for_a_tiny_one(name):
    from runner.models.tiny import TINY_NAMES

    overrides = offline_overrides(name)
    workflow = load_workflow(WORKFLOWS / name, overrides)
    for model_name, entry in workflow.models.items():
        assert entry.source.startswith("tiny:"), f"--set models.{model_name}=tiny:... missing from the offline command"
        assert entry.source[len("tiny:"):] in TINY_NAMES, entry.source
        for value in entry.embeddings.values():
            assert value.startswith("tiny:") and value[len("tiny:"):] in TINY_NAMES, value


def test_sdxl_refiner_hands_latents_over():
    workflow = load_workflow(WORKFLOWS / "sdxl_refiner.yaml")
    base, refined = workflow.nodes["base"].fields, workflow.nodes["refined"].fields
    assert base.pipeline_kwargs == {"denoising_end": 0.8}
    assert refined.denoising_start == 0.8
    assert str(refined.latents) == "$base.latents"
    assert refined.image is None


def test_sdxl_turbo_is_one_step_without_guidance():
    fields = load_workflow(WORKFLOWS / "sdxl_turbo.yaml").nodes["fast"].fields
    assert fields.steps == 1 and fields.guidance_scale == 0


def test_room_makeover_is_a_chain_of_node_types():
    workflow = load_workflow(WORKFLOWS / "room_makeover.yaml")
    order = workflow.graph.order()
    chain = ["room", "room_depth", "restyled", "fixed", "polished", "final"]
    assert [n for n in order if n in chain] == chain
    assert [workflow.nodes[n].type.name for n in chain] == [
        "load_image", "estimate_depth", "txt2img", "inpaint", "refine", "save_image"]
    assert str(workflow.nodes["restyled"].fields.controlnet[0].image) == "$room_depth"


def test_inputs_are_small_pngs():
    from PIL import Image

    inputs = sorted((WORKFLOWS / "inputs").iterdir())
    assert {"room.png", "pose.png", "person.png"} <= {p.name for p in inputs}
    for path in inputs:
        assert path.stat().st_size < 20_000, path
        with Image.open(path) as image:
            assert image.format == "PNG"
