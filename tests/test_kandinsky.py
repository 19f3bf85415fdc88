"""Kandinsky 2.2 nodes on tiny models: txt2img, img2img, inpaint and interpolate through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import WORKFLOWS, latest_run, manifest, run_cli
from PIL import Image

ROOM = WORKFLOWS / "inputs" / "room.png"
FAST = "pipeline_kwargs: {prior_num_inference_steps: 2}"


def write(tmp_path: Path, nodes_yaml: str, name: str = "kd") -> Path:
    """The workflow, with the demo photo beside it as room.png (input files come from the workflow's folder)."""
    (tmp_path / "room.png").write_bytes(ROOM.read_bytes())
    workflow = tmp_path / f"{name}.yaml"
    workflow.write_text(
        f"version: 1\nname: {name}\nseed: 5\nmodels: {{k: tiny:kandinsky22, ki: tiny:kandinsky22-inpaint}}\nnodes:\n"
        "  src: {type: load_image, path: room.png, size: [64, 64]}\n"
        "  left: {type: make_mask, like: $src, shapes: [{rect: [0, 0, 32, 64]}]}\n" + nodes_yaml)
    return workflow


ALL = f"""
  t: {{type: txt2img, model: $models.k, prompt: a cat, steps: 2, width: 64, height: 64, {FAST}}}
  i: {{type: img2img, model: $models.k, image: $src, prompt: a cat, steps: 2, strength: 0.7, {FAST}}}
  p: {{type: inpaint, model: $models.ki, image: $src, mask: $left, prompt: a cat, steps: 2, {FAST}}}
  b:
    type: interpolate
    model: $models.k
    steps: 2
    width: 64
    height: 64
    items:
      - {{prompt: a cat, weight: 0.4}}
      - {{prompt: starry night, weight: 0.3}}
      - {{image: $src, weight: 0.3}}
    {FAST}
  save: {{type: save_image, images: [$t, $i, $p, $b], name: out.png}}
"""


def test_four_tasks_run_deterministically_sharing_one_load(tmp_path):
    workflow = write(tmp_path, ALL)
    out = tmp_path / "out"
    digests = []
    for _ in range(2):
        assert run_cli("run", workflow, "--out", out, "--plain", "--no-cache") == 0
        run_dir = latest_run(out, "kd")
        files = [run_dir / f"out_{i}.png" for i in range(4)]
        assert [Image.open(f).size for f in files] == [(64, 64)] * 4
        digests.append([Image.open(f).tobytes() for f in files])
    assert digests[0] == digests[1]
    assert len(set(digests[0])) == 4

    data = manifest(run_dir)
    nodes = data["nodes"]
    assert {n: nodes[n]["pipeline_class"] for n in "tipb"} == {
        "t": "KandinskyV22CombinedPipeline", "i": "KandinskyV22Img2ImgCombinedPipeline",
        "p": "KandinskyV22InpaintCombinedPipeline", "b": "KandinskyV22Pipeline"}
    assert nodes["b"]["prior_pipeline_class"] == "KandinskyV22PriorPipeline"
    assert nodes["b"]["prior_call"]["weights"] == [0.4, 0.3, 0.3]
    assert nodes["t"]["call"]["prior_num_inference_steps"] == 2 and nodes["i"]["call"]["strength"] == 0.7
    # three nodes on tiny:kandinsky22, one on the inpaint model: each loaded exactly once
    loaded = data["models_loaded"]
    assert len(loaded) == 2 and len(set(loaded)) == 2
    assert sorted(m.split("@")[0] for m in loaded) == ["tiny:kandinsky22", "tiny:kandinsky22-inpaint"]


def test_inpaint_repaints_white_and_keeps_black(tmp_path):
    """Runner's mask convention holds for Kandinsky: an all-black mask repaints nothing, so the seed is irrelevant."""
    nodes = ""
    for color in ("black", "white"):
        nodes += f"  {color}: {{type: make_mask, like: $src, invert: {str(color == 'white').lower()}}}\n"
        for seed in (1, 2):
            nodes += (f"  {color}_{seed}: {{type: inpaint, model: $models.ki, image: $src, mask: ${color}, prompt: a cat, "
                      f"steps: 2, seed: {seed}, {FAST}}}\n"
                      f"  save_{color}_{seed}: {{type: save_image, image: ${color}_{seed}, name: {color}_{seed}.png}}\n")
    assert run_cli("run", write(tmp_path, nodes), "--out", tmp_path / "out", "--plain") == 0
    run_dir = latest_run(tmp_path / "out", "kd")
    pixels = {name: Image.open(run_dir / f"{name}.png").tobytes() for name in ("black_1", "black_2", "white_1", "white_2")}
    assert pixels["black_1"] == pixels["black_2"]
    assert pixels["white_1"] != pixels["white_2"]


def test_inpaint_keeps_the_input_size(tmp_path):
    nodes = f"""
  big: {{type: load_image, path: room.png, size: [100, 72]}}
  hole: {{type: make_mask, like: $big, shapes: [{{rect: [10, 10, 60, 60]}}]}}
  p: {{type: inpaint, model: $models.ki, image: $big, mask: $hole, prompt: a cat, steps: 2, {FAST}}}
  s: {{type: save_image, image: $p, name: p.png}}
"""
    assert run_cli("run", write(tmp_path, nodes), "--out", tmp_path / "out", "--plain") == 0
    run_dir = latest_run(tmp_path / "out", "kd")
    assert Image.open(run_dir / "p.png").size == (100, 72)
    assert manifest(run_dir)["nodes"]["p"]["generated_size"] == [128, 64]


def test_mismatched_decoders_and_unsupported_fields_fail_clearly(tmp_path, capsys):
    cases = {
        "  p: {type: inpaint, model: $models.k, image: $src, mask: $left, steps: 2}\n":
            ["'tiny:kandinsky22'", "kandinsky-community/kandinsky-2-2-decoder-inpaint", "tiny:kandinsky22-inpaint"],
        "  t: {type: txt2img, model: $models.ki, steps: 2, width: 64, height: 64}\n":
            ["'tiny:kandinsky22-inpaint'", "inpainting checkpoint", "tiny:kandinsky22 offline"],
        "  t: {type: txt2img, model: $models.k, steps: 2, lora: [{model: tiny:lora-sd15}]}\n":
            ["LoRA is not supported for Kandinsky 2.2", "'tiny:kandinsky22'"],
        "  t: {type: txt2img, model: $models.k, steps: 2, width: 72, height: 64}\n":
            ["width 72", "multiple of 64"],
        "  t: {type: txt2img, model: $models.k, steps: 2, scheduler: euler}\n":
            ["nodes.t.scheduler: scheduler 'euler' is not one Kandinsky 2.2 runs with", "dpmpp_2m"],
        "  i: {type: img2img, model: $models.k, image: $src, steps: 2, strength: 0.3}\n":
            ["leaves no denoising step"],
        # its pipeline takes no strength (it always repaints the masked area fully): refused before the run
        "  p: {type: inpaint, model: $models.ki, image: $src, mask: $left, steps: 2, strength: 0.5}\n":
            ["nodes.p.strength: KandinskyV22InpaintCombinedPipeline", "takes no 'strength'"],
    }
    for index, (nodes, expected) in enumerate(cases.items()):
        capsys.readouterr()
        workflow = write(tmp_path, nodes, name=f"bad{index}")
        # what the files already say (the decoder's channels, LoRA support, the pipeline's arguments, the family's
        # samplers) and the steps x strength written in the node are refused by validation (exit 2)
        assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 2, nodes
        err = capsys.readouterr().err
        for text in expected:
            assert text in err, (text, err)


def test_decoder_scheduler_swaps_per_node(tmp_path):
    nodes = f"""
  a: {{type: txt2img, model: $models.k, prompt: a cat, steps: 2, width: 64, height: 64, scheduler: dpmpp_2m, {FAST}}}
  b: {{type: txt2img, model: $models.k, prompt: a cat, steps: 2, width: 64, height: 64, {FAST}}}
"""
    assert run_cli("run", write(tmp_path, nodes), "--out", tmp_path / "out", "--plain") == 0
    data = manifest(latest_run(tmp_path / "out", "kd"))
    assert [data["nodes"][n]["scheduler"] for n in "ab"] == ["DPMSolverMultistepScheduler", "DDPMScheduler"]
    assert len(data["models_loaded"]) == 1


def test_a_decoder_folder_alone_is_refused(tmp_path, models_dir, capsys):
    from runner.models.tiny import ensure_tiny

    decoder = ensure_tiny("kandinsky22", models_dir / "tiny") / "decoder"
    workflow = tmp_path / "alone.yaml"
    workflow.write_text(f"version: 1\nmodels: {{k: '{decoder}'}}\nnodes:\n"
                        "  t: {type: txt2img, model: $models.k, steps: 2, width: 64, height: 64}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 1
    err = capsys.readouterr().err
    assert "a KandinskyV22Pipeline folder alone" in err and "prior/ and decoder/" in err


@pytest.mark.parametrize("version", ["21", "22"])
def test_hub_layout_loads_decoder_with_its_connected_prior(tmp_path, models_dir, version):
    """A hub decoder's model card names its prior; AutoPipeline loads both (simulated with local folders), for
    Kandinsky 2.1 and 2.2 alike."""
    import importlib
    import shutil
    from types import SimpleNamespace

    import torch

    from runner.core.model_entry import ModelEntry
    from runner.models.families.prior_decoder import components_of, line_of
    from runner.models.sources import ModelSource, ModelUnavailable
    from runner.models.tiny import ensure_tiny

    line = line_of(importlib.import_module(f"runner.models.families.kandinsky{version}").FAMILY)
    tiny = ensure_tiny(f"kandinsky{version}-inpaint", models_dir / "tiny")
    snapshot = tmp_path / "snapshot"
    shutil.copytree(tiny / "decoder", snapshot)
    (snapshot / "README.md").write_text(f"---\nprior:\n- {tiny / 'prior'}\n---\n")
    registry = SimpleNamespace(device="cpu", cached=lambda key, factory, **_how: factory(), estimate=lambda source: None,
                               pretrained_args=lambda source: (str(snapshot), {"dtype": torch.float32, "use_safetensors": True}),
                               model_folder=lambda source: snapshot)
    hub_id = f"{line.decoder_hub_id}-inpaint"
    source = ModelSource(ModelEntry(source=hub_id), "hub", hub_id)
    parts = components_of(line, registry, source, "id")
    assert parts["unet"].config.in_channels == 9 and type(parts["prior_prior"]).__name__ == "PriorTransformer"
    assert ("text_encoder" in parts) == (version == "21")  # 2.1's decoder reads the prompt itself

    registry.model_folder = lambda source: tiny / "prior"
    with pytest.raises(ModelUnavailable, match=f"is a Kandinsky 2.{version[1]} prior"):
        components_of(line, registry, source, "id")


def test_interpolate_needs_a_kandinsky_model(tmp_path, capsys):
    workflow = tmp_path / "sd.yaml"
    workflow.write_text("version: 1\nmodels: {sd: tiny:sd15}\nnodes:\n"
                        "  b: {type: interpolate, model: $models.sd, items: [{prompt: a}, {prompt: b}]}\n")
    # the family is known from the files: refused before the run, at the node's model
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 2
    err = capsys.readouterr().err
    assert (f"{workflow}:4:26: nodes.b.model: model 'tiny:sd15' is an SD 1.x/2.x model, which an interpolate node "
            "cannot use: it runs on Kandinsky 2.1 or Kandinsky 2.2 models") in err, err
