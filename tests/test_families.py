"""The model families users run beyond SD and SDXL: Stable Diffusion 3 and FLUX.1, each task against plain diffusers
code written as diffusers' documentation writes it (AutoPipeline or the family's pipeline, a CPU generator with the
node's seed), on the same tiny model: pixel-identical. And what validation refuses, at the field, when a family
cannot do what a node asks.

Where runner does more than the docs' code, the test says so: FLUX's img2img and inpaint get the input image's size
(the pipelines would make 1024 px images), and runner seeds torch's global generator with the node's seed too (SD3's
ControlNet encodes its condition drawing from it).
"""

from __future__ import annotations

import pytest
import torch

from conftest import run_cli, write_workflow
from test_parity import PROMPT, SEED, folder, generator, quiet, runner_image, same


@pytest.mark.parametrize("model", ["sd3", "flux", "flux-schnell"])
def test_txt2img(tmp_path, model):
    from diffusers import AutoPipelineForText2Image

    image, run = runner_image(tmp_path, f"m: tiny:{model}", f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, "
                                                             f"steps: 2, seed: {SEED}, width: 64, height: 64}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder(model)))
    same(image, pipe(PROMPT, num_inference_steps=2, width=64, height=64, generator=generator()).images[0])
    node = run.manifest["nodes"]["out"]
    assert node["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert node["pipeline_class"] == {"sd3": "StableDiffusion3Pipeline"}.get(model, "FluxPipeline")


@pytest.mark.parametrize("model", ["sd3", "flux"])
def test_img2img_and_inpaint(tmp_path, model):
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    size = {"width": 64, "height": 64} if model == "flux" else {}  # what runner passes to FLUX (the input's size)
    image, run = runner_image(tmp_path, f"m: tiny:{model}",
                              f"  out: {{type: img2img, model: $models.m, image: $photo, prompt: {PROMPT}, steps: 4, "
                              f"strength: 0.6, seed: {SEED}}}\n"
                              f"  fill: {{type: inpaint, model: $models.m, image: $photo, mask: $hole, prompt: {PROMPT}, "
                              f"steps: 2, seed: {SEED}}}\n")
    photo, hole = run.image("photo"), run.image("hole")
    base = quiet(AutoPipelineForImage2Image.from_pretrained(folder(model)))
    same(image, base(PROMPT, image=photo, strength=0.6, num_inference_steps=4, generator=generator(), **size).images[0])
    inpaint = quiet(AutoPipelineForInpainting.from_pipe(base))
    same(run.image("fill"), inpaint(PROMPT, image=photo, mask_image=hole.convert("L"), width=64, height=64,
                                    num_inference_steps=2, generator=generator()).images[0])
    assert run.image("out").size == (64, 64)


def test_sd3_controlnet(tmp_path):
    from diffusers import SD3ControlNetModel, StableDiffusion3ControlNetPipeline

    image, run = runner_image(tmp_path, "m: tiny:sd3, cn: tiny:controlnet-sd3",
                              "  edges: {type: canny, image: $photo}\n"
                              f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                              "controlnet: [{model: $models.cn, image: $edges, scale: 0.7}]}\n")
    controlnet = SD3ControlNetModel.from_pretrained(folder("controlnet-sd3"))
    pipe = quiet(StableDiffusion3ControlNetPipeline.from_pretrained(folder("sd3"), controlnet=controlnet))
    torch.manual_seed(SEED)  # the condition's latents are sampled from torch's global generator
    same(image, pipe(PROMPT, control_image=run.image("edges"), controlnet_conditioning_scale=0.7, num_inference_steps=2,
                     generator=generator()).images[0])


@pytest.mark.parametrize("task", ["txt2img", "img2img", "inpaint"])
def test_flux_controlnet(tmp_path, task):
    import diffusers

    fields = {"txt2img": "width: 64, height: 64", "img2img": "image: $photo, strength: 0.6",
              "inpaint": "image: $photo, mask: $hole"}[task]
    steps = 4 if task == "img2img" else 2
    image, run = runner_image(tmp_path, "m: tiny:flux, cn: tiny:controlnet-flux",
                              "  edges: {type: canny, image: $photo}\n"
                              f"  out: {{type: {task}, model: $models.m, prompt: {PROMPT}, steps: {steps}, seed: {SEED}, "
                              f"{fields}, controlnet: [{{model: $models.cn, image: $edges}}]}}\n")
    controlnet = diffusers.FluxControlNetModel.from_pretrained(folder("controlnet-flux"))
    cls = {"txt2img": "FluxControlNetPipeline", "img2img": "FluxControlNetImg2ImgPipeline",
           "inpaint": "FluxControlNetInpaintPipeline"}[task]
    pipe = quiet(getattr(diffusers, cls).from_pretrained(folder("flux"), controlnet=controlnet))
    inputs = {"txt2img": {}, "img2img": {"image": run.image("photo"), "strength": 0.6},
              "inpaint": {"image": run.image("photo"), "mask_image": run.image("hole").convert("L")}}[task]
    same(image, pipe(PROMPT, control_image=run.image("edges"), num_inference_steps=steps, width=64, height=64,
                     generator=generator(), **inputs).images[0])
    assert run.manifest["nodes"]["out"]["pipeline_class"] == cls


@pytest.mark.parametrize("model", ["sd3", "flux"])
def test_lora(tmp_path, model):
    from diffusers import AutoPipelineForText2Image

    image, _ = runner_image(tmp_path, f"m: tiny:{model}, l: tiny:lora-{model}",
                            f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                            "width: 64, height: 64, lora: [{model: $models.l, scale: 0.7}]}\n"
                            f"  plain: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                            "width: 64, height: 64}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder(model)))
    pipe.load_lora_weights(folder(f"lora-{model}"), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[0.7])
    same(image, pipe(PROMPT, num_inference_steps=2, width=64, height=64, generator=generator()).images[0])


def test_lora_sdxl(tmp_path):
    from diffusers import AutoPipelineForText2Image

    image, _ = runner_image(tmp_path, "m: tiny:sdxl, l: tiny:lora-sdxl",
                            f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                            "lora: [{model: $models.l, scale: 0.7}]}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sdxl")))
    pipe.load_lora_weights(folder("lora-sdxl"), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[0.7])
    same(image, pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])


def test_flow_matching_scheduler_names(tmp_path):
    """On a flow-matching family, dpmpp_2m is DPM-Solver++ on flow sigmas shifted as the checkpoint's schedule."""
    from diffusers import AutoPipelineForText2Image, DPMSolverMultistepScheduler

    image, run = runner_image(tmp_path, "m: tiny:sd3", f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, "
                                                       f"steps: 3, seed: {SEED}, scheduler: dpmpp_2m}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd3")))
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_flow_sigmas=True,
                                                             prediction_type="flow_prediction", flow_shift=3.0)
    same(image, pipe(PROMPT, num_inference_steps=3, generator=generator()).images[0])
    assert run.manifest["nodes"]["out"]["scheduler"] == "DPMSolverMultistepScheduler"


BAD = """version: 1
nodes:
  photo: {type: load_image, path: in.png, size: [64, 64]}
  a: {type: txt2img, model: tiny:flux, prompt: a cat, steps: 2, width: 72, height: 64, scheduler: ddim}
  b: {type: txt2img, model: tiny:sd3, prompt: a cat, steps: 2, lora: [{model: tiny:lora-flux}, {model: tiny:lora-sd15}]}
  c: {type: txt2img, model: tiny:sd15, prompt: a cat, steps: 2, lora: [{model: tiny:lora-sdxl}, {model: tiny:lora-sd15}]}
  d: {type: txt2img, model: tiny:sd3, steps: 2, controlnet: [{model: tiny:controlnet-flux, image: $photo}]}
  e: {type: txt2img, model: tiny:sd15, steps: 2}
  f: {type: img2img, model: tiny:sdxl, latents: $e.latents, steps: 2}
  g: {type: img2img, model: tiny:flux, latents: $e.latents, steps: 2}
  h: {type: img2img, model: tiny:sd3, image: $photo, steps: 2, controlnet: [{model: tiny:controlnet-sd3, image: $photo}]}
  i: {type: depth2img, model: tiny:flux, image: $photo, steps: 2}
"""


def test_what_a_family_cannot_do_is_refused_at_the_field(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "bad.yaml", BAD)
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    expected = [
        ("4:65", "nodes.a.width: width 72: FLUX.1 makes images in steps of 16 pixels", "use a multiple of 16, e.g. 64"),
        ("4:88", "nodes.a.scheduler: scheduler 'ddim' is not one FLUX.1 runs with", "use one of: euler, dpmpp_2m, unipc"),
        ("5:72", "nodes.b.lora[0].model: LoRA 'tiny:lora-flux' was not made for 'tiny:sd3' (Stable Diffusion 3)",
         "use a LoRA trained on Stable Diffusion 3"),
        ("5:97", "nodes.b.lora[1].model: LoRA 'tiny:lora-sd15' was not made for 'tiny:sd3'", "it adapts a UNet"),
        ("6:73", "nodes.c.lora[0].model: LoRA 'tiny:lora-sdxl' was not made for 'tiny:sd15' (SD 1.x/2.x)",
         "reads text 64 wide, the checkpoint's 32"),
        ("7:63", "nodes.d.controlnet[0].model: ControlNet 'tiny:controlnet-flux' was made for FLUX.1 checkpoints, but "
                 "'tiny:sd3' is a Stable Diffusion 3 checkpoint", "tiny:controlnet-sd3 offline"),
        ("9:40", "nodes.f.latents: the latents of 'e' are SD 1.x/2.x latents, which 'tiny:sdxl' (SDXL) cannot read",
         "give 'image' instead of 'latents' (e.g. image: $e)"),
        ("10:40", "nodes.g.latents: FLUX.1 (model 'tiny:flux') takes an image here, not latents", "image: $e"),
        ("11:64", "nodes.h.controlnet: ControlNet is not supported for Stable Diffusion 3 (model 'tiny:sd3') on an "
                  "img2img node", "remove 'controlnet'"),
        ("12:24", "nodes.i.model: model 'tiny:flux' is a FLUX.1 model, which a depth2img node cannot use: it runs on "
                  "SD 1.x/2.x models", "stable-diffusion-2-depth"),
    ]
    for where, message, fix in expected:
        assert f"{workflow}:{where}: {message}" in err, (message, err)
        assert fix in err, fix
    assert err.rstrip().endswith(f"{len(expected)} problems found"), err


@pytest.mark.parametrize("checkpoint, family", [("tiny:sd15-inpaint", "SD 1.x/2.x"), ("tiny:kandinsky21-inpaint", "Kandinsky 2.1"),
                                                ("tiny:kandinsky22-inpaint", "Kandinsky 2.2")])
def test_an_inpainting_checkpoint_in_img2img_is_refused_at_its_model_field(checkpoint, family, tmp_path, capsys):
    """Issue 27 item 2: its denoiser takes 9 channels, which no img2img pipeline feeds; refused before anything loads."""
    line = f"  r: {{type: img2img, model: {checkpoint}, image: $photo, prompt: a room}}"
    workflow = write_workflow(tmp_path, "wf.yaml", "version: 1\nnodes:\n  photo: {type: load_image, path: in.png}\n"
                              + line + "\n")
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    where = f"{workflow}:4:{line.index(f'model: {checkpoint}') + 1}"  # a mapping entry is located at its key
    assert (f"{where}: nodes.r.model: model '{checkpoint}' is an inpainting checkpoint ({family}; its denoiser takes 9 "
            "input channels), which an img2img node cannot use") in err, err
    assert "fix: use it in an inpaint node, or use the base (non-inpainting) checkpoint here" in err, err
    assert err.rstrip().endswith("1 problem found"), err


CONTROLNET_FAMILIES = {"sd15": "SD 1.x/2.x", "sdxl": "SDXL", "sd3": "Stable Diffusion 3", "flux": "FLUX.1",
                       "kandinsky22": "Kandinsky 2.2"}


@pytest.mark.parametrize("checkpoint, controlnet", [(checkpoint, controlnet) for checkpoint in CONTROLNET_FAMILIES
                                                    for controlnet in CONTROLNET_FAMILIES if checkpoint != controlnet])
def test_every_cross_family_controlnet_pairing_is_refused_at_validate(checkpoint, controlnet, tmp_path, capsys):
    """Issue 27 item 2: a ControlNet made for another family is refused at its model field, naming both families,
    with the fix, before anything loads."""
    line = (f"  c: {{type: txt2img, model: tiny:{checkpoint}, prompt: a room, "
            f"controlnet: [{{model: tiny:controlnet-{controlnet}, image: $photo}}]}}")
    workflow = write_workflow(tmp_path, "wf.yaml", "version: 1\nnodes:\n  photo: {type: load_image, path: in.png}\n"
                              + line + "\n")
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    where = f"{workflow}:4:{line.index(f'model: tiny:controlnet-{controlnet}') + 1}"  # at the item's model key
    assert (f"{where}: nodes.c.controlnet[0].model: ControlNet 'tiny:controlnet-{controlnet}' was made for "
            f"{CONTROLNET_FAMILIES[controlnet]} checkpoints, but 'tiny:{checkpoint}' is ") in err, err
    assert f"{CONTROLNET_FAMILIES[checkpoint]} checkpoint" in err and f"tiny:controlnet-{checkpoint} offline" in err, err
    assert err.rstrip().endswith("1 problem found"), err
