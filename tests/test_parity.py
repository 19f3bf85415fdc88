"""Parity: each technique as plain diffusers code, written the way diffusers' documentation writes it
(from_pretrained, a CPU generator with the node's seed, no arguments beyond those the node sets), against the
runner node on the same tiny model: the images must be pixel-identical.

Where runner passes something the docs' code does not, the test says so: inpaint nodes pass the input
image's size as width/height (64 px here, which is also the pipelines' default for these checkpoints).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import write_workflow

import runner

SEED = 5
PROMPT = "a cosy cabin in the woods"


def folder(name: str) -> str:
    from runner.models.tiny import ensure_tiny

    return str(ensure_tiny(name, Path(os.environ["RUNNER_MODELS_DIR"]) / "tiny"))


def generator() -> torch.Generator:
    return torch.Generator("cpu").manual_seed(SEED)


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def runner_image(tmp_path: Path, models: str, nodes: str, output: str = "out"):
    """The image of node `output` when runner runs these nodes (photo: the demo room at 64 px, hole: a mask)."""
    workflow = write_workflow(tmp_path, "parity.yaml",
                              "version: 1\n"
                              f"models: {{{models}}}\n"
                              "nodes:\n"
                              "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                              "  hole: {type: make_mask, like: $photo, shapes: [{rect: [8, 8, 40, 40]}]}\n"
                              + nodes)
    with runner.Session(out=tmp_path / "out") as session:
        run = session.run(workflow)
        assert run.status == "ok", run.error
        return run.image(output), run


def same(a: Image.Image, b: Image.Image) -> None:
    assert a.size == b.size
    assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes(), "runner and plain diffusers differ"


def inputs(run) -> tuple[Image.Image, Image.Image]:
    return run.image("photo"), run.image("hole")


def test_txt2img_sd15(tmp_path):
    from diffusers import AutoPipelineForText2Image

    image, _ = runner_image(tmp_path, "m: tiny:sd15", f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    same(image, pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])


def test_vae_override(tmp_path):
    """`vae:` on a model entry is diffusers' `from_pretrained(..., vae=AutoencoderKL...)`; another VAE, another image."""
    from diffusers import AutoencoderKL, AutoPipelineForText2Image

    node = f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n"
    image, run = runner_image(tmp_path, "m: {source: tiny:sd15, vae: tiny:sdxl}", node)
    vae = AutoencoderKL.from_pretrained(folder("sdxl"), subfolder="vae")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15"), vae=vae))
    same(image, pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])
    (tmp_path / "own").mkdir()
    own, _ = runner_image(tmp_path / "own", "m: tiny:sd15", node)
    assert own.tobytes() != image.tobytes()
    record = run.manifest["models"]["$models.m"]
    assert record["identity"].endswith(";vae=" + record["vae"]["identity"]) and record["vae"]["source"] == "tiny:sdxl"


def test_txt2img_sdxl_and_turbo_settings(tmp_path):
    from diffusers import AutoPipelineForText2Image

    image, _ = runner_image(tmp_path, "m: tiny:sdxl",
                            f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 1, guidance_scale: 0.0, seed: {SEED}}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sdxl")))
    same(image, pipe(PROMPT, num_inference_steps=1, guidance_scale=0.0, generator=generator()).images[0])


@pytest.mark.parametrize("model, steps", [("sd15", 2), ("sdxl", 4)])  # SDXL img2img's own strength is 0.3: 4 x 0.3 -> 1 step
def test_img2img_uses_the_pipelines_own_strength(tmp_path, model, steps):
    from diffusers import AutoPipelineForImage2Image

    image, run = runner_image(tmp_path, f"m: tiny:{model}",
                              f"  out: {{type: img2img, model: $models.m, image: $photo, prompt: {PROMPT}, steps: {steps}, seed: {SEED}}}\n")
    photo, _hole = inputs(run)
    pipe = quiet(AutoPipelineForImage2Image.from_pretrained(folder(model)))
    same(image, pipe(PROMPT, image=photo, num_inference_steps=steps, generator=generator()).images[0])
    assert run.manifest["nodes"]["out"]["call_defaults"]["strength"] == (0.8 if model == "sd15" else 0.3)


@pytest.mark.parametrize("model", ["sd15", "sd15-inpaint", "sdxl"])
def test_inpaint_uses_the_pipelines_own_strength(tmp_path, model):
    from diffusers import AutoPipelineForInpainting

    image, run = runner_image(tmp_path, f"m: tiny:{model}",
                              f"  out: {{type: inpaint, model: $models.m, image: $photo, mask: $hole, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n")
    photo, hole = inputs(run)
    pipe = quiet(AutoPipelineForInpainting.from_pretrained(folder(model)))
    # runner passes the input's size (diffusers would use the checkpoint's default size, 64 px here too)
    same(image, pipe(PROMPT, image=photo, mask_image=hole, num_inference_steps=2, width=64, height=64,
                     generator=generator()).images[0])


def test_controlnet_txt2img(tmp_path):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    image, run = runner_image(tmp_path, "m: tiny:sd15, cn: tiny:controlnet-sd15",
                              "  edges: {type: canny, image: $photo}\n"
                              f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                              "controlnet: [{model: $models.cn, image: $edges}]}\n")
    controlnet = ControlNetModel.from_pretrained(folder("controlnet-sd15"))
    pipe = quiet(StableDiffusionControlNetPipeline.from_pretrained(folder("sd15"), controlnet=controlnet))
    same(image, pipe(PROMPT, image=run.image("edges"), num_inference_steps=2, generator=generator()).images[0])


def test_controlnet_img2img_uses_the_pipelines_own_scale(tmp_path):
    from diffusers import ControlNetModel, StableDiffusionControlNetImg2ImgPipeline

    image, run = runner_image(tmp_path, "m: tiny:sd15, cn: tiny:controlnet-sd15",
                              "  edges: {type: canny, image: $photo}\n"
                              f"  out: {{type: img2img, model: $models.m, image: $photo, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                              "controlnet: [{model: $models.cn, image: $edges}]}\n")
    controlnet = ControlNetModel.from_pretrained(folder("controlnet-sd15"))
    pipe = quiet(StableDiffusionControlNetImg2ImgPipeline.from_pretrained(folder("sd15"), controlnet=controlnet))
    same(image, pipe(PROMPT, image=run.image("photo"), control_image=run.image("edges"), num_inference_steps=2,
                     generator=generator()).images[0])
    assert run.manifest["nodes"]["out"]["call_defaults"]["controlnet_conditioning_scale"] == 0.8


def test_controlnet_inpaint_with_the_standard_inpaint_condition(tmp_path):
    import numpy as np
    from diffusers import ControlNetModel, StableDiffusionControlNetInpaintPipeline

    image, run = runner_image(tmp_path, "m: tiny:sd15, cn: tiny:controlnet-sd15",
                              f"  out: {{type: inpaint, model: $models.m, image: $photo, mask: $hole, prompt: {PROMPT}, "
                              f"steps: 2, seed: {SEED}, controlnet: [{{model: $models.cn}}]}}\n")
    photo, hole = inputs(run)

    def make_inpaint_condition(image, image_mask):  # as in diffusers' ControlNet inpaint docs
        image = np.array(image.convert("RGB")).astype(np.float32) / 255.0
        image_mask = np.array(image_mask.convert("L")).astype(np.float32) / 255.0
        image[image_mask > 0.5] = -1.0
        return torch.from_numpy(np.expand_dims(image, 0).transpose(0, 3, 1, 2))

    controlnet = ControlNetModel.from_pretrained(folder("controlnet-sd15"))
    pipe = quiet(StableDiffusionControlNetInpaintPipeline.from_pretrained(folder("sd15"), controlnet=controlnet))
    same(image, pipe(PROMPT, image=photo, mask_image=hole, control_image=make_inpaint_condition(photo, hole),
                     num_inference_steps=2, width=64, height=64, generator=generator()).images[0])


@pytest.mark.parametrize("given_depth", [False, True])
def test_depth2img(tmp_path, given_depth):
    from diffusers import StableDiffusionDepth2ImgPipeline

    depth = ", depth: $depth" if given_depth else ""
    image, run = runner_image(tmp_path, "m: tiny:sd2-depth, d: tiny:dpt",
                              "  depth: {type: estimate_depth, image: $photo, model: $models.d}\n"
                              f"  out: {{type: depth2img, model: $models.m, image: $photo{depth}, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n")
    pipe = quiet(StableDiffusionDepth2ImgPipeline.from_pretrained(folder("sd2-depth")))
    extra = {}
    if given_depth:
        import numpy as np

        extra["depth_map"] = torch.from_numpy(np.asarray(run.image("depth").convert("L"), dtype=np.float32)[None])
    same(image, pipe(PROMPT, image=run.image("photo"), num_inference_steps=2, generator=generator(), **extra).images[0])


def test_sdxl_refiner_on_an_image_uses_its_own_strength(tmp_path):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    image, run = runner_image(tmp_path, "r: tiny:sdxl-refiner",
                              f"  out: {{type: refine, model: $models.r, image: $photo, prompt: {PROMPT}, steps: 4, seed: {SEED}}}\n")
    pipe = quiet(StableDiffusionXLImg2ImgPipeline.from_pretrained(folder("sdxl-refiner")))
    same(image, pipe(PROMPT, image=run.image("photo"), num_inference_steps=4, generator=generator()).images[0])


def test_sdxl_base_and_refiner_hand_over_latents(tmp_path):
    from diffusers import DiffusionPipeline

    image, run = runner_image(tmp_path, "b: tiny:sdxl, r: tiny:sdxl-refiner",
                              f"  base: {{type: txt2img, model: $models.b, prompt: {PROMPT}, steps: 4, seed: {SEED}, "
                              "pipeline_kwargs: {denoising_end: 0.75}}\n"
                              f"  out: {{type: refine, model: $models.r, latents: $base.latents, denoising_start: 0.75, "
                              f"prompt: {PROMPT}, steps: 4, seed: 6}}\n")
    # nothing reads the base's image: it is not decoded (output_type="latent", as diffusers' docs call the base)
    base_record = run.manifest["nodes"]["base"]
    assert base_record["call"]["output_type"] == "latent" and base_record["decode_skipped"]
    assert list(base_record["outputs"]) == ["latents"]
    base = quiet(DiffusionPipeline.from_pretrained(folder("sdxl")))
    refiner = quiet(DiffusionPipeline.from_pretrained(folder("sdxl-refiner"), text_encoder_2=base.text_encoder_2, vae=base.vae))
    latents = base(PROMPT, num_inference_steps=4, denoising_end=0.75, output_type="latent", generator=generator()).images
    expected = refiner(PROMPT, image=latents, num_inference_steps=4, denoising_start=0.75,
                       generator=torch.Generator("cpu").manual_seed(6)).images[0]
    same(image, expected)


def test_lora(tmp_path):
    from diffusers import AutoPipelineForText2Image

    image, _ = runner_image(tmp_path, "m: tiny:sd15, l: tiny:lora-sd15",
                            f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                            "lora: [{model: $models.l, scale: 0.7}]}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    pipe.load_lora_weights(folder("lora-sd15"), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[0.7])
    same(image, pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])


def test_scheduler_swap(tmp_path):
    from diffusers import AutoPipelineForText2Image, EulerAncestralDiscreteScheduler

    image, _ = runner_image(tmp_path, "m: tiny:sd15",
                            f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 3, seed: {SEED}, scheduler: euler_a}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    same(image, pipe(PROMPT, num_inference_steps=3, generator=generator()).images[0])


def test_a_named_scheduler_on_the_checkpoints_own_pipeline_leaves_the_next_node_its_own(tmp_path):
    """depth2img runs on the checkpoint's own pipeline: a node naming a scheduler sets it there, and a later node
    naming none still gets the checkpoint's own (it once got the named one's class and settings)."""
    from diffusers import StableDiffusionDepth2ImgPipeline

    image, run = runner_image(tmp_path, "m: tiny:sd2-depth, d: tiny:dpt",
                              "  depth: {type: estimate_depth, image: $photo, model: $models.d}\n"
                              f"  first: {{type: depth2img, model: $models.m, image: $photo, depth: $depth, prompt: {PROMPT}, "
                              "steps: 2, scheduler: dpmpp_2m_karras}\n"
                              f"  out: {{type: depth2img, model: $models.m, image: $photo, depth: $depth, prompt: {PROMPT}, "
                              f"steps: 2, seed: {SEED}}}\n")
    assert run.manifest["nodes"]["first"]["scheduler"] == "DPMSolverMultistepScheduler"
    import json

    own = json.loads((Path(folder("sd2-depth")) / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
    assert own != "DPMSolverMultistepScheduler" and run.manifest["nodes"]["out"]["scheduler"] == own
    pipe = quiet(StableDiffusionDepth2ImgPipeline.from_pretrained(folder("sd2-depth")))
    import numpy as np

    depth = torch.from_numpy(np.asarray(run.image("depth").convert("L"), dtype=np.float32)[None])
    same(image, pipe(PROMPT, image=run.image("photo"), depth_map=depth, num_inference_steps=2,
                     generator=generator()).images[0])


def test_diffusion_upscaler(tmp_path):
    from diffusers import StableDiffusionUpscalePipeline

    image, run = runner_image(tmp_path, "u: tiny:sd-x4-upscaler",
                              f"  small: {{type: load_image, path: in.png, size: [16, 16]}}\n"
                              f"  out: {{type: upscale, image: $small, model: $models.u, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n")
    pipe = quiet(StableDiffusionUpscalePipeline.from_pretrained(folder("sd-x4-upscaler")))
    same(image, pipe(prompt=PROMPT, image=run.image("small"), num_inference_steps=2, generator=generator()).images[0])


def kandinsky(task: str):
    """What AutoPipelineFor*.from_pretrained("kandinsky-community/kandinsky-2-2-decoder") builds: the combined
    pipeline of the decoder and the prior its model card names (here the tiny model's prior/ and decoder/)."""
    import diffusers

    root = Path(folder("kandinsky22-inpaint" if task == "inpaint" else "kandinsky22"))
    prior = diffusers.KandinskyV22PriorPipeline.from_pretrained(root / "prior")
    decoder = diffusers.DiffusionPipeline.from_pretrained(root / "decoder")
    combined = {"txt2img": diffusers.KandinskyV22CombinedPipeline, "img2img": diffusers.KandinskyV22Img2ImgCombinedPipeline,
                "inpaint": diffusers.KandinskyV22InpaintCombinedPipeline}[task]
    parts = {name: decoder.components[name] for name in ("unet", "scheduler", "movq")}
    parts.update({f"prior_{name}": module for name, module in prior.components.items()})
    return quiet(combined(**parts))


@pytest.mark.parametrize("task", ["txt2img", "img2img", "inpaint"])
def test_kandinsky22(tmp_path, task):
    import warnings

    node = {"txt2img": "type: txt2img", "img2img": "type: img2img, image: $photo",
            "inpaint": "type: inpaint, image: $photo, mask: $hole"}[task]
    model = "tiny:kandinsky22-inpaint" if task == "inpaint" else "tiny:kandinsky22"
    image, run = runner_image(tmp_path, f"k: {model}",
                              f"  out: {{{node}, model: $models.k, prompt: {PROMPT}, steps: 4, width: 64, height: 64, seed: {SEED}}}\n")
    extra = {"txt2img": {}, "img2img": {"image": run.image("photo")},
             "inpaint": {"image": run.image("photo"), "mask_image": run.image("hole")}}[task]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        expected = kandinsky(task)(PROMPT, num_inference_steps=4, width=64, height=64, generator=generator(),
                                   **extra).images[0]
    same(image, expected)


def test_nodes_and_schema_show_each_pipelines_own_default(capsys):
    from conftest import run_cli

    from runner.schema import workflow_json_schema

    assert run_cli("nodes", "img2img") == 0
    out = capsys.readouterr().out
    strength = next(line for line in out.splitlines() if line.strip().startswith("strength"))
    assert "default: the pipeline's (0.8 for StableDiffusionImg2ImgPipeline" in strength
    # the classes of the model families runner runs the node on, each with its own default
    assert "0.3 for StableDiffusionXLImg2ImgPipeline, KandinskyImg2ImgCombinedPipeline, KandinskyV22Img2ImgCombinedPipeline, Kandinsky3Img2ImgPipeline" in strength
    assert "0.6 for StableDiffusion3Img2ImgPipeline, FluxImg2ImgPipeline" in strength
    assert run_cli("nodes", "inpaint") == 0
    out = capsys.readouterr().out
    assert "0.9999 for StableDiffusionXLInpaintPipeline" in out and "0.5 for StableDiffusionControlNetInpaintPipeline" in out
    definitions = workflow_json_schema()["definitions"]
    assert "0.3 for StableDiffusionXLImg2ImgPipeline" in definitions["Img2imgNode"]["properties"]["strength"]["description"]
    assert "0.8 for StableDiffusionControlNetImg2ImgPipeline" in definitions["ControlNet"]["properties"]["scale"]["description"]


def test_a_base_whose_image_is_read_too_is_decoded(tmp_path):
    """The decode is skipped only when every reader takes the latents: a save_image of the base keeps it, and the
    latents handed on are the same either way."""
    _image, run = runner_image(tmp_path, "b: tiny:sdxl, r: tiny:sdxl-refiner",
                               f"  base: {{type: txt2img, model: $models.b, prompt: {PROMPT}, steps: 4, seed: {SEED}, "
                               "pipeline_kwargs: {denoising_end: 0.75}}\n"
                               f"  out: {{type: refine, model: $models.r, latents: $base.latents, denoising_start: 0.75, "
                               f"prompt: {PROMPT}, steps: 4, seed: 6}}\n"
                               "  keep: {type: save_image, image: $base}\n")
    record = run.manifest["nodes"]["base"]
    assert "output_type" not in record["call"] and "decode_skipped" not in record
    assert set(record["outputs"]) == {"image", "images", "latents"}
