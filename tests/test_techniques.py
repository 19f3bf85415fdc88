"""Each technique end to end through the CLI on tiny models: output size, same seed -> same bytes, pipeline class."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from conftest import write_workflow, latest_run, manifest, run_cli

MODELS = ("models: {sd: tiny:sd15, cn: tiny:controlnet-sd15, xl: tiny:sdxl, xlcn: tiny:controlnet-sdxl, "
          "ref: tiny:sdxl-refiner, dep: tiny:sd2-depth, inp: tiny:sd15-inpaint, lora: tiny:lora-sd15}\n")
INPUTS = """  photo: {type: load_image, path: in.png}
  edges: {type: canny, image: $photo}
  depth: {type: estimate_depth, image: $photo, model: tiny:dpt}
  hole: {type: make_mask, like: $photo, shapes: [{rect: [10, 10, 40, 40]}]}
"""

# technique -> (node under test, extra nodes, pipeline class that must have run, output size)
TECHNIQUES = {
    "controlnet_canny_txt2img": (
        "  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2, controlnet: [{model: $models.cn, image: $edges, scale: 0.7}]}\n",
        "StableDiffusionControlNetPipeline", (64, 64)),
    "multi_controlnet_txt2img": (
        "  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2, width: 72, height: 56, controlnet: ["
        "{model: $models.cn, image: $edges}, {model: $models.cn, image: $depth, scale: 0.5, start: 0.2, end: 0.8}]}\n",
        "StableDiffusionControlNetPipeline", (72, 56)),
    "controlnet_depth_img2img": (
        "  out: {type: img2img, model: $models.sd, image: $photo, prompt: a room, steps: 2, strength: 0.7, "
        "controlnet: [{model: $models.cn, image: $depth}]}\n",
        "StableDiffusionControlNetImg2ImgPipeline", (64, 64)),
    "controlnet_inpaint_condition": (
        "  out: {type: inpaint, model: $models.sd, image: $photo, mask: $hole, prompt: a window, steps: 2, "
        "controlnet: [{model: $models.cn}]}\n",
        "StableDiffusionControlNetInpaintPipeline", (64, 64)),
    "controlnet_on_inpaint_checkpoint": (
        "  out: {type: inpaint, model: $models.inp, image: $photo, mask: $hole, prompt: a window, steps: 2, "
        "controlnet: [{model: $models.cn, image: $edges}]}\n",
        "StableDiffusionControlNetInpaintPipeline", (64, 64)),
    "sdxl_controlnet": (
        "  out: {type: txt2img, model: $models.xl, prompt: a room, steps: 2, controlnet: [{model: $models.xlcn, image: $edges}]}\n",
        "StableDiffusionXLControlNetPipeline", (64, 64)),
    "depth2img_own_estimator": (
        "  out: {type: depth2img, model: $models.dep, image: $photo, prompt: a room, steps: 2, strength: 0.7}\n",
        "StableDiffusionDepth2ImgPipeline", (64, 64)),
    "depth2img_given_depth": (
        "  out: {type: depth2img, model: $models.dep, image: $photo, depth: $depth, prompt: a room, steps: 2}\n",
        "StableDiffusionDepth2ImgPipeline", (64, 64)),
    "sdxl_base_refiner_latents": (
        "  base: {type: txt2img, model: $models.xl, prompt: a room, steps: 4, pipeline_kwargs: {denoising_end: 0.5}}\n"
        "  out: {type: refine, model: $models.ref, latents: $base.latents, denoising_start: 0.5, prompt: a room, steps: 4}\n",
        "StableDiffusionXLImg2ImgPipeline", (64, 64)),
    "sdxl_refine_image": (
        "  base: {type: txt2img, model: $models.xl, prompt: a room, steps: 2, "
        "pipeline_kwargs: {original_size: [128, 128], crops_coords_top_left: [0, 0], target_size: [64, 64]}}\n"
        "  out: {type: refine, model: $models.ref, image: $base, strength: 0.3, prompt: a room, steps: 4}\n",
        "StableDiffusionXLImg2ImgPipeline", (64, 64)),
    "sdxl_turbo_style": (
        "  out: {type: txt2img, model: $models.xl, prompt: a room, steps: 1, guidance_scale: 0.0}\n",
        "StableDiffusionXLPipeline", (64, 64)),
    "scheduler_swap": (
        "  out: {type: img2img, model: $models.sd, image: $photo, prompt: a room, steps: 3, strength: 0.9, scheduler: euler_a}\n",
        "StableDiffusionImg2ImgPipeline", (64, 64)),
    "diffusion_upscaler": (
        "  out: {type: upscale, image: $photo, model: tiny:sd-x4-upscaler, prompt: a room, steps: 2}\n",
        "StableDiffusionUpscalePipeline", (256, 256)),
    "memory_options": (
        "  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2, attention_slicing: true, vae_tiling: true}\n",
        "StableDiffusionPipeline", (64, 64)),
    "lora": (
        "  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2, lora: [{model: $models.lora, scale: 0.8}]}\n",
        "StableDiffusionPipeline", (64, 64)),
}


def write(tmp_path: Path, nodes: str) -> Path:
    workflow = write_workflow(tmp_path, "tech.yaml", "version: 1\nseed: 5\n" + MODELS + "nodes:\n" + INPUTS + nodes + "  save: {type: save_image, image: $out}\n")
    return workflow


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pixels(path: Path) -> bytes:
    """Pixel data only: saved PNGs of different workflows differ in their embedded workflow text."""
    return Image.open(path).tobytes()


@pytest.mark.parametrize("technique", sorted(TECHNIQUES))
def test_technique(technique, tmp_path):
    nodes, pipeline_class, size = TECHNIQUES[technique]
    workflow = write(tmp_path, nodes)
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    first = latest_run(tmp_path / "out", "tech")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain", "--no-cache") == 0
    second = latest_run(tmp_path / "out", "tech")
    assert Image.open(first / "save.png").size == size
    assert sha(first / "save.png") == sha(second / "save.png")
    node = manifest(second)["nodes"]["out"]
    assert node["status"] == "ran" and node["pipeline_class"] == pipeline_class


def test_multi_controlnet_uses_a_multicontrolnet_and_loads_the_net_once(tmp_path):
    workflow = write(tmp_path, TECHNIQUES["multi_controlnet_txt2img"][0]
                     + "  again: {type: img2img, model: $models.sd, image: $photo, steps: 2, controlnet: [{model: $models.cn, image: $edges}]}\n")
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    data = manifest(latest_run(tmp_path / "out", "tech"))
    assert data["nodes"]["out"]["controlnet_class"] == "MultiControlNetModel"
    assert [c["scale"] for c in data["nodes"]["out"]["controlnets"]] == [1.0, 0.5]
    loaded = data["models_loaded"]
    assert sum(1 for m in loaded if m.startswith("tiny:controlnet-sd15@")) == 1
    assert sum(1 for m in loaded if m.startswith("tiny:sd15@")) == 1


def test_refiner_shares_the_base_vae_and_second_text_encoder(tmp_path):
    workflow = write(tmp_path, TECHNIQUES["sdxl_base_refiner_latents"][0])
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 0
    node = manifest(latest_run(tmp_path / "out", "tech"))["nodes"]["out"]
    assert node["shared_components"] == ["text_encoder_2", "vae"]


def test_lora_changes_the_image_and_is_removed_afterwards(tmp_path):
    plain = "  out: {type: txt2img, model: $models.sd, prompt: a room, steps: 2, seed: 3}\n"
    with_lora = ("  styled: {type: txt2img, model: $models.sd, prompt: a room, steps: 2, seed: 3, "
                 "lora: [{model: $models.lora, scale: 1.0}, {model: $models.lora, scale: 0.5}]}\n"
                 "  keep: {type: save_image, image: $styled}\n")
    workflow = write(tmp_path, plain)
    assert run_cli("run", workflow, "--out", tmp_path / "alone", "--plain") == 0
    alone = pixels(latest_run(tmp_path / "alone", "tech") / "save.png")
    workflow = write(tmp_path, with_lora + plain)  # the LoRA node runs first, on the same shared UNet
    assert run_cli("run", workflow, "--out", tmp_path / "both", "--plain", "--no-cache") == 0
    both = latest_run(tmp_path / "both", "tech")
    assert pixels(both / "keep.png") != alone
    assert pixels(both / "save.png") == alone
    assert len(manifest(both)["nodes"]["styled"]["loras"]) == 2


@pytest.mark.parametrize("nodes, words", [
    ("  out: {type: txt2img, model: $models.sd, steps: 2, controlnet: [{model: $models.xlcn, image: $edges}]}\n",
     ["tiny:controlnet-sdxl", "tiny:sd15", "SDXL", "SD 1.x/2.x"]),
    ("  out: {type: txt2img, model: $models.xl, steps: 2, controlnet: [{model: $models.cn, image: $edges}]}\n",
     ["tiny:controlnet-sd15", "tiny:sdxl", "fix: use an SDXL ControlNet here", "tiny:controlnet-sdxl offline"]),
    ("  out: {type: depth2img, model: $models.sd, image: $photo, steps: 2}\n",
     ["tiny:sd15", "depth2img node cannot use", "stable-diffusion-2-depth"]),
    ("  out: {type: txt2img, model: $models.inp, steps: 2}\n",
     ["tiny:sd15-inpaint", "inpainting checkpoint", "inpaint node"]),
])
def test_wrong_pairings_fail_with_both_names_and_the_fix(nodes, words, tmp_path, capsys):
    """The model families are known from the files: refused by validation (exit 2), at the field, before anything runs."""
    workflow = write(tmp_path, nodes)
    assert run_cli("run", workflow, "--out", tmp_path / "out", "--plain") == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


def test_controlnet_rules_are_checked_at_validation(tmp_path, capsys):
    workflow = write(tmp_path, "  out: {type: txt2img, model: $models.sd, controlnet: [{model: $models.cn}]}\n")
    assert run_cli("validate", workflow) == 2
    assert "needs an 'image'" in capsys.readouterr().err
    workflow = write(tmp_path, "  out: {type: depth2img, model: $models.dep, image: $photo, controlnet: [{model: $models.cn, image: $edges}]}\n")
    assert run_cli("validate", workflow) == 2
    assert ("a depth2img node takes no 'controlnet': StableDiffusionDepth2ImgPipeline takes no ControlNet ('controlnet' "
            "is a field of img2img, inpaint, txt2img)") in capsys.readouterr().err
