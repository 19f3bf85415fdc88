"""The hires fix: a base image enlarged and passed through img2img again, in pixels (upscale) and in latents
(upscale_latents), against plain diffusers code that does the same (output_type="latent", torch's interpolate, the
img2img pipeline taking latents as its image), pixel-identical on tiny:sd15."""

from __future__ import annotations

import torch

from conftest import run_cli, write_workflow
from test_parity import PROMPT, SEED, folder, generator, quiet, runner_image, same


def test_latent_hires_fix_matches_plain_diffusers(tmp_path):
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    image, run = runner_image(tmp_path, "m: tiny:sd15",
                              f"  base: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 3, seed: {SEED}}}\n"
                              "  up: {type: upscale_latents, latents: $base.latents, scale: 2, method: bicubic}\n"
                              f"  out: {{type: img2img, model: $models.m, latents: $up, prompt: {PROMPT}, steps: 4, "
                              f"strength: 0.5, seed: {SEED}}}\n")
    base = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    latents = base(PROMPT, num_inference_steps=3, generator=generator(), output_type="latent").images
    bigger = torch.nn.functional.interpolate(latents, scale_factor=2, mode="bicubic")
    second = quiet(AutoPipelineForImage2Image.from_pipe(base))
    same(image, second(PROMPT, image=bigger, strength=0.5, num_inference_steps=4, generator=generator()).images[0])
    assert image.size == (128, 128)
    assert run.manifest["nodes"]["up"]["latent_size"] == [16, 16]


def test_pixel_hires_fix_and_the_resize_methods(tmp_path):
    from PIL import Image

    image, run = runner_image(tmp_path, "m: tiny:sd15",
                              "  big: {type: upscale, image: $photo, size: [96, 80], method: bicubic}\n"
                              "  out: {type: upscale, image: $photo, scale: 1.5, method: nearest-exact}\n")
    photo = run.image("photo")
    assert run.image("big").tobytes() == photo.resize((96, 80), Image.Resampling.BICUBIC).tobytes()
    assert image.tobytes() == photo.resize((96, 96), Image.Resampling.NEAREST).tobytes()


BAD = """version: 1
nodes:
  base: {type: txt2img, model: tiny:sd15, prompt: a cat, steps: 2}
  a: {type: upscale_latents, latents: $base.latents, size: [100, 96]}
  b: {type: upscale_latents, latents: $base.latents, size: [96, 96], scale: 2}
  c: {type: upscale_latents, latents: $base}
  d: {type: upscale, image: $base, size: [96, 96], model: tiny:sd-x4-upscaler}
"""


def test_what_the_upscale_nodes_refuse(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "bad.yaml", BAD)
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    for message in ("nodes.a: size [100, 96]: latents are 1/8 of the image, so both sides must be multiples of 8",
                    "nodes.b: give either scale or size, not both",
                    "nodes.c.latents: link type mismatch: '$base' is image",
                    "nodes.d: size is for a resize; a diffusion upscaler enlarges by its own factor"):
        assert message in err, (message, err)


def test_the_recipe_hands_latents_over():
    from conftest import WORKFLOWS

    from runner.engine.loading import load_workflow

    workflow = load_workflow(WORKFLOWS / "hires_fix.yaml")
    assert str(workflow.nodes["hires_latent"].fields.latents) == "$bigger_latents"
    assert workflow.nodes["bigger_latents"].type.name == "upscale_latents"
