"""The message table: each finding of issue 16 (item 3), what runner prints for it, and what it must not print.

Every error says what is wrong, where, and how to fix it (a '    fix:' line that fits it); warnings name work
that would change nothing. Each row is a small workflow run through the CLI in this process.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from conftest import latest_run, manifest, run_cli, write_workflow


@dataclass
class Row:
    id: str
    yaml: str
    command: str  # validate | run | lock
    status: int
    says: tuple[str, ...]  # in stderr, in this order
    never: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


HEAD = "version: 1\nname: msg\nmodels: {sd: tiny:sd15, xlcn: tiny:controlnet-sdxl}\nnodes:\n  photo: {type: load_image, path: in.png, size: [64, 64]}\n"

ROWS = [
    Row("reordered-node-type", HEAD + "  d: {type: depth_estimate, image: $photo, model: tiny:dpt}\n", "validate", 2,
        ("wf.yaml:6:7: nodes.d.type: unknown node type 'depth_estimate' (did you mean 'estimate_depth'?)",
         "fix: run 'runner nodes'"), ("depth2img",)),
    Row("param-type-error-names-both-places", HEAD.replace("nodes:\n", "params:\n  size: 64\nnodes:\n")
        + "  p2: {type: load_image, path: in.png, size: $params.size}\n", "validate", 2,
        ("wf.yaml:8:40: nodes.p2.size: should be a list (got 64) (from params.size defined at wf.yaml:5:3)",
         "fix: in params.size (wf.yaml:5:3): write a list in brackets, e.g. [64, 64]"),
        ("Input should be", "valid tuple")),
    Row("param-type-error-from-set", HEAD.replace("nodes:\n", "params:\n  steps: 2\nnodes:\n")
        + "  g: {type: txt2img, model: $models.sd, steps: $params.steps}\n", "validate", 2,
        ("nodes.g.steps: should be a whole number (got 'many') (from params.steps set by --set params.steps=many)",
         "fix: in params.steps (--set params.steps=many): write a whole number from 1 to 1000"),
        ("Input should be", "unable to parse")),
    Row("unknown-tiny-name", HEAD.replace("tiny:sd15", "tiny:sd16") + "  g: {type: txt2img, model: $models.sd}\n",
        "run", 2,
        ("wf.yaml:3:10: models.sd: unknown tiny model 'tiny:sd16' (did you mean 'tiny:sd15'?)",
         "fix: use one of the tiny models: tiny:sd15, tiny:sd15-inpaint", "tiny:lora-sd15", "tiny:sd-x4-upscaler",
         "tiny:vitpose", "tiny:rtdetr"), ("fix the path",)),
    Row("missing-model-path", HEAD + "  g: {type: txt2img, model: ./no-such-model}\n", "run", 2,
        ("nodes.g.model: model source './no-such-model' is neither an existing folder or file",
         "fix: fix the path (relative to the workflow file's folder), or write a hub id")),
    Row("missing-input-file", HEAD.replace("path: in.png", "path: gone.png"), "validate", 2,
        ("wf.yaml:5:29: nodes.photo.path: input file gone.png does not exist", "fix: fix the path (relative to the "
         "workflow file's folder), or put the file there")),
    Row("bare-name-without-model-folders", HEAD + "  g: {type: txt2img, model: dreamshaper_8.safetensors}\n", "validate", 2,
        ("wf.yaml:6:22: nodes.g.model: model 'dreamshaper_8.safetensors' is not in the workflow's folder",
         "and no model folders are set to look in", "fix: name the folder that holds it with --model-path DIR or "
         "RUNNER_MODEL_PATHS"), ("Traceback", ".cache")),
    Row("bare-name-not-in-the-model-folders", HEAD + "  g: {type: txt2img, model: dreamshaper_8.safetensors}\n",
        "validate", 2,
        ("wf.yaml:6:22: nodes.g.model: model 'dreamshaper_8.safetensors' was not found: looked in the workflow's "
         "folder and the model folders (", "/comfy/checkpoints, ", "/comfy/diffusers, ",
         "fix: put it into one of these folders (ComfyUI layout: checkpoints/, controlnet/, loras/, vae/, ...)"),
        env=(("RUNNER_MODEL_PATHS", "comfy"),)),
    Row("controlnet-where-a-checkpoint-goes", HEAD + "  g: {type: txt2img, model: $models.xlcn}\n", "validate", 2,
        ("wf.yaml:3:25: models.xlcn: model 'tiny:controlnet-sdxl' is a ControlNet, used where a checkpoint is expected",
         "fix: put it under a node's controlnet: [{model: ..., image: ...}], and give this place a checkpoint")),
    Row("vae-not-found", HEAD.replace("models: {sd: tiny:sd15", "models: {sd: {source: tiny:sd15, vae: ./my-vae}")
        + "  g: {type: txt2img, model: $models.sd}\n", "validate", 2,
        ("wf.yaml:3:34: models.sd.vae: model source './my-vae' is neither an existing folder or file",
         "fix: fix the path (relative to the workflow file's folder)")),
    Row("hub-model-not-cached", HEAD.replace("models: {", "models: {hub: {source: acme/absent, revision: v2}, ")
        + "  g: {type: txt2img, model: $models.hub}\n", "run", 1,
        ("not in the local Hugging Face cache", "fix: download it where there is internet with "
         "`hf download acme/absent --revision v2`"), ("huggingface-cli",), (("HF_HUB_OFFLINE", "1"),)),
    Row("sdxl-controlnet-on-sd15", HEAD + "  edges: {type: canny, image: $photo}\n"
        "  g: {type: txt2img, model: $models.sd, steps: 2, controlnet: [{model: $models.xlcn, image: $edges}]}\n", "run", 2,
        ("nodes.g.controlnet[0].model: ControlNet 'tiny:controlnet-sdxl' was made for SDXL checkpoints",
         "'tiny:sd15' is an SD 1.x/2.x checkpoint",
         "fix: use an SD 1.x/2.x ControlNet here (lllyasviel/control_v11p_sd15_canny; tiny:controlnet-sd15 offline), "
         "or run 'tiny:controlnet-sdxl' with an SDXL checkpoint"), ("*-sdxl-*",)),
    Row("strength-zero", HEAD + "  r: {type: img2img, model: $models.sd, image: $photo, strength: 0}\n", "validate", 2,
        ("nodes.r.strength: strength 0 asks for no change at all, and diffusers cannot run it",
         "fix: to keep the image as it is, link the input image itself")),
    Row("strength-times-steps-below-one", HEAD + "  r: {type: img2img, model: $models.sd, image: $photo, strength: 0.25, steps: 2}\n",
        "validate", 2, ("wf.yaml:6:56: nodes.r.strength: strength 0.25 x steps 2 leaves no denoising step",
                        "fix: raise steps to at least 4, or strength to at least 0.5")),
    Row("strength-times-steps-from-params", HEAD.replace("nodes:\n", "params: {s: 0.1}\nnodes:\n")
        + "  r: {type: inpaint, model: $models.sd, image: $photo, mask: $photo, strength: $params.s, steps: 5}\n",
        "validate", 2, ("nodes.r.strength: strength 0.1 x steps 5 leaves no denoising step",)),
    Row("tab-indentation", HEAD.replace("  photo:", "\tphoto:"), "validate", 2,
        ("wf.yaml:5:1: YAML syntax error: a tab; YAML indents with spaces only",
         "fix: replace the tab with spaces")),
    Row("set-names-a-param-without-params", HEAD.replace("nodes:\n", "params: {steps: 2}\nnodes:\n"), "validate", 2,
        ("--set steps=4: steps: unknown field 'steps' on the workflow; the workflow has a param 'steps'",
         "fix: params are set as params.steps (--set params.steps=VALUE)"), ("did you mean",)),
    Row("mask-outside-the-image", HEAD + "  m: {type: make_mask, like: $photo, shapes: [{rect: [300, 80, 480, 260]}]}\n"
        "  fix: {type: inpaint, model: $models.sd, image: $photo, mask: $m, steps: 2}\n", "run", 0,
        ("warning: m: the mask is all black: shapes[0] (rect [300, 80, 480, 260]) lies outside the 64 x 64 image",
         "move them inside", "warning: fix: its mask ($m) has no white area: nothing is repainted")),
    Row("mask-all-white", HEAD + "  m: {type: make_mask, like: $photo, invert: true}\n"
        "  fix: {type: inpaint, model: $models.sd, image: $photo, mask: $m, steps: 2}\n", "run", 0,
        ("warning: m: the mask is all white ('invert' turned an empty mask white)",
         "warning: fix: its mask ($m) is all white: the whole image is repainted")),
    Row("mask-without-shapes", HEAD + "  m: {type: make_mask, size: [64, 64]}\n", "run", 0,
        ("warning: m: the mask is all black: it has no shapes",)),
    Row("hub-model-lock", HEAD + "  g: {type: txt2img, model: acme/absent}\n", "lock", 2,
        ("cannot lock 'acme/absent'", "fix: download it first: hf download acme/absent"), ("huggingface-cli",)),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_message_table(row, tmp_path, capsys, monkeypatch):
    workflow = write_workflow(tmp_path, "wf.yaml", row.yaml)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for name, value in row.env:
        monkeypatch.setenv(name, value)
    (tmp_path / "comfy").mkdir()  # an empty ComfyUI models folder, for RUNNER_MODEL_PATHS=comfy
    extra = {"param-type-error-from-set": ["--set", "params.steps=many"],
             "set-names-a-param-without-params": ["--set", "steps=4"]}.get(row.id, [])
    if row.command == "run":
        extra += ["--out", str(tmp_path / "out"), "--plain"]
    status = run_cli(row.command, workflow.name, *extra)
    err = capsys.readouterr().err
    assert status == row.status, err
    position = 0
    for words in row.says:
        found = err.find(words, position)
        assert found >= 0, (words, err)
        position = found + len(words)
    for words in row.never:
        assert words not in err, (words, err)
    assert "Traceback" not in err


def test_a_failed_node_records_its_fix_in_the_manifest(tmp_path, capsys):
    # known only once the mask is drawn: a run-time refusal
    workflow = write_workflow(tmp_path, "wf.yaml", HEAD + "  m: {type: make_mask, like: $photo}\n"
                                                       "  r: {type: inpaint, model: tiny:sd15-inpaint, image: $photo, mask: $m, "
                                                       "padding_mask_crop: 8, steps: 2}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--quiet") == 1
    node = manifest(latest_run(tmp_path / "out", "msg"))["nodes"]["r"]
    assert node["status"] == "failed" and node["fix"] == "draw the area to repaint in white, or remove padding_mask_crop"


def test_every_validation_error_has_a_fix_line(tmp_path, monkeypatch, capsys):
    """Each case of the validation suite (one per error class) prints a fix line under each of its problems."""
    from test_validation_errors import CASES, problems_in, run_validate

    missing = []
    for case in CASES:
        folder = tmp_path / case.id
        folder.mkdir()
        _status, _out, err = run_validate(folder, monkeypatch, capsys, case.yaml, *case.args)
        missing += [f"[{case.id}] {problem}" for problem in problems_in(err) if "\n    fix: " not in problem]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("word, suggestion", [
    ("depth_estimate", "estimate_depth"), ("image_load", "load_image"), ("pose_detect", "detect_pose"),
    ("depth_estimat", "estimate_depth"), ("txt2imag", "txt2img"), ("save", "save_image"), ("mask-make", "make_mask"),
])
def test_did_you_mean_matches_reordered_words(word, suggestion):
    from runner.core.suggest import did_you_mean
    from runner.nodes import NODE_TYPES

    assert did_you_mean(word, NODE_TYPES) == f" (did you mean '{suggestion}'?)"


def test_did_you_mean_stays_quiet_without_a_close_name():
    from runner.core.suggest import did_you_mean
    from runner.nodes import NODE_TYPES

    assert did_you_mean("blur_everything", NODE_TYPES) == ""


def test_warnings_are_kept_in_the_manifest(tmp_path):
    workflow = write_workflow(tmp_path, "wf.yaml", HEAD + "  m: {type: make_mask, like: $photo, "
                                                       "shapes: [{ellipse: [-40, -40, -10, -10]}]}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--quiet") == 0
    warnings = manifest(latest_run(tmp_path / "out", "msg"))["nodes"]["m"]["warnings"]
    assert warnings[0].startswith("the mask is all black: shapes[0] (ellipse [-40, -40, -10, -10]) lies outside")


def test_a_comfyui_class_name_in_runner_nodes_points_at_the_importer(capsys):
    assert run_cli("nodes", "ksampler") == 2
    err = capsys.readouterr().err
    assert "unknown node type 'ksampler'" in err
    assert "fix: 'KSampler' is a ComfyUI node, which 'runner import comfyui GRAPH.json' maps to runner's nodes" in err


def test_zip_of_unequal_lengths_has_a_fix(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "wf.yaml", "version: 1\nparams: {a: 1, b: 1}\nnodes:\n"
                              "  photo: {type: load_image, path: in.png}\n")
    assert run_cli("run", workflow, "--dry-run", "--out", tmp_path / "out", "--sweep", "params.a=1,2",
                   "--sweep", "params.b=1,2,3", "--zip") == 2
    assert "fix: give each --sweep the same number of values" in capsys.readouterr().err


def test_a_node_of_one_step_says_step():
    import io

    from runner.engine.progress import PlainEvents

    stream = io.StringIO()
    events = PlainEvents({"g": "txt2img", "h": "txt2img"}, stream=stream)
    for node, steps in (("g", 1), ("h", 2)):
        events.node_started(node)
        for step in range(1, steps + 1):
            events.node_step(node, step, steps)
        events.node_done(node, 0.5)
    text = stream.getvalue()
    assert "done     g (txt2img) in 0.50 s (1 step)" in text and "(2 steps" in text, text
