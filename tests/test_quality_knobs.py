"""Knobs users reach for after the basics, each against what diffusers' documented call does, on tiny models:
clip_skip (A1111's "CLIP skip"), inpainting only the masked area (padding_mask_crop)."""

from __future__ import annotations

import torch

from conftest import run_cli, write_workflow
from test_parity import PROMPT, SEED, folder, generator, quiet, runner_image, same


def test_clip_skip_is_the_penultimate_layer_normalised(tmp_path):
    """diffusers' clip_skip=1: the prompt's embeddings from the text encoder's penultimate layer, through its final
    layer norm (the negative prompt's as usual). With transformers 5 the SD pipeline's own code cannot reach that
    layer norm (runner bridges it, runner/models/compat.py); the reference here computes the same embeddings itself."""
    from diffusers import AutoPipelineForText2Image

    image, run = runner_image(tmp_path, "m: tiny:sd15",
                              f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                              "clip_skip: 1}\n"
                              f"  plain: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15")))
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        embeds = pipe.text_encoder.final_layer_norm(hidden)
    same(image, pipe(prompt_embeds=embeds, num_inference_steps=2, generator=generator()).images[0])
    assert image.tobytes() != run.image("plain").tobytes()
    assert run.manifest["nodes"]["out"]["call"]["clip_skip"] == 1


def test_clip_skip_on_sdxl_is_diffusers_own(tmp_path):
    from diffusers import AutoPipelineForText2Image

    image, _run = runner_image(tmp_path, "m: tiny:sdxl",
                               f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                               "clip_skip: 1}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sdxl")))
    same(image, pipe(PROMPT, clip_skip=1, num_inference_steps=2, generator=generator()).images[0])


def test_inpaint_only_the_masked_area(tmp_path):
    from diffusers import AutoPipelineForInpainting

    image, run = runner_image(tmp_path, "m: tiny:sd15-inpaint",
                              f"  out: {{type: inpaint, model: $models.m, image: $photo, mask: $hole, prompt: {PROMPT}, "
                              f"steps: 2, seed: {SEED}, padding_mask_crop: 8}}\n")
    pipe = quiet(AutoPipelineForInpainting.from_pretrained(folder("sd15-inpaint")))
    same(image, pipe(PROMPT, image=run.image("photo"), mask_image=run.image("hole"), width=64, height=64,
                     padding_mask_crop=8, num_inference_steps=2, generator=generator()).images[0])


def test_knobs_a_pipeline_does_not_take_are_refused_at_the_field(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "bad.yaml", "version: 1\nnodes:\n"
                              "  a: {type: txt2img, model: tiny:kandinsky22, prompt: a cat, clip_skip: 2}\n"
                              "  b: {type: txt2img, model: tiny:flux, prompt: a cat, clip_skip: 1}\n")
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    assert f"{workflow}:3:62: nodes.a.clip_skip: KandinskyV22CombinedPipeline" in err and "takes no 'clip_skip'" in err, err
    assert f"{workflow}:4:55: nodes.b.clip_skip: FluxPipeline" in err, err


def test_a_knob_left_out_is_not_in_the_cache_key(tmp_path):
    """clip_skip came after the first cache keys: unset (or null) it is no part of the key, so results cached before
    it existed stay cached; set, it is."""
    import runner

    def key(extra: dict) -> str:
        workflow = {"version": 1, "nodes": {"g": {"type": "txt2img", "model": "tiny:sd15", "prompt": "a cat", **extra}}}
        with runner.Session(out=tmp_path / "out") as session:
            return session.plan(session.load(workflow)).tasks["g"].key

    assert key({}) == key({"clip_skip": None}) != key({"clip_skip": 1})


def test_pag_is_the_tasks_pag_pipeline(tmp_path):
    """pag_scale runs the task's Perturbed-Attention Guidance pipeline, as diffusers' docs make it (enable_pag=True on
    the AutoPipeline), on the layers asked for."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    image, run = runner_image(tmp_path, "m: tiny:sd15",
                              f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                              "pag_scale: 2.5, pag_applied_layers: [mid]}\n"
                              f"  again: {{type: img2img, model: $models.m, image: $photo, prompt: {PROMPT}, steps: 4, "
                              f"strength: 0.5, seed: {SEED}, pag_scale: 3.0}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sd15"), enable_pag=True, pag_applied_layers=["mid"]))
    same(image, pipe(PROMPT, pag_scale=2.5, num_inference_steps=2, generator=generator()).images[0])
    assert run.manifest["nodes"]["out"]["pipeline_class"] == "StableDiffusionPAGPipeline"
    second = quiet(AutoPipelineForImage2Image.from_pretrained(folder("sd15"), enable_pag=True))
    same(run.image("again"), second(PROMPT, image=run.image("photo"), strength=0.5, pag_scale=3.0,
                                    num_inference_steps=4, generator=generator()).images[0])


def test_freeu_for_one_node_only(tmp_path):
    """freeu is switched on for its node and off again: the next node on the same (shared) pipeline is plain."""
    from diffusers import AutoPipelineForText2Image

    image, run = runner_image(tmp_path, "m: tiny:sdxl",
                              f"  out: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                              "freeu: {s1: 0.6, s2: 0.4, b1: 1.1, b2: 1.2}}\n"
                              f"  plain: {{type: txt2img, model: $models.m, prompt: {PROMPT}, steps: 2, seed: {SEED}}}\n")
    pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("sdxl")))
    same(run.image("plain"), pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])
    pipe.enable_freeu(s1=0.6, s2=0.4, b1=1.1, b2=1.2)
    same(image, pipe(PROMPT, num_inference_steps=2, generator=generator()).images[0])


PAG_FREEU_BAD = """version: 1
nodes:
  photo: {type: load_image, path: in.png, size: [64, 64]}
  a: {type: txt2img, model: tiny:flux, prompt: a cat, steps: 2, pag_scale: 3}
  b: {type: txt2img, model: tiny:sd3, prompt: a cat, steps: 2, freeu: {s1: 1, s2: 1, b1: 1, b2: 1}}
  c: {type: txt2img, model: tiny:sd15, prompt: a cat, steps: 2, pag_applied_layers: [mid]}
  d: {type: img2img, model: tiny:sd15, image: $photo, prompt: a cat, pag_scale: 3, controlnet: [{model: tiny:controlnet-sd15, image: $photo}]}
"""


def test_pag_and_freeu_where_they_cannot_run_are_refused_at_the_field(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "bad.yaml", PAG_FREEU_BAD)
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    for message in ("nodes.a.pag_scale: diffusers has no Perturbed-Attention Guidance pipeline for FluxPipeline",
                    "nodes.b.freeu: FreeU is a UNet's, and Stable Diffusion 3 (model 'tiny:sd3') has none",
                    "nodes.c: pag_applied_layers is for Perturbed-Attention Guidance, which pag_scale turns on",
                    "nodes.d.pag_scale: diffusers has no Perturbed-Attention Guidance pipeline for "
                    "StableDiffusionControlNetImg2ImgPipeline"):
        assert message in err, (message, err)


def test_padding_mask_crop_with_an_empty_mask_says_so(tmp_path):
    import runner

    workflow = write_workflow(tmp_path, "empty.yaml", "version: 1\nnodes:\n"
                              "  photo: {type: load_image, path: in.png, size: [64, 64]}\n"
                              "  none: {type: make_mask, like: $photo}\n"
                              "  out: {type: inpaint, model: tiny:sd15-inpaint, image: $photo, mask: $none, steps: 2, "
                              "padding_mask_crop: 8}\n")
    with runner.Session(out=tmp_path / "out") as session:
        run = session.run(workflow)
    assert run.status == "failed" and "its mask ($none) has no white area, so there is no area to crop" in run.error


def test_padding_mask_crop_with_a_built_inpaint_condition_is_refused_at_the_field(tmp_path, capsys):
    """diffusers crops the ControlNet condition with the image and can crop only an image; the inpaint condition runner
    builds from image and mask is a tensor (the call failed inside diffusers)."""
    workflow = write_workflow(tmp_path, "crop.yaml", "version: 1\nmodels: {m: 'tiny:sd15-inpaint', cn: 'tiny:controlnet-sd15'}\n"
                              "nodes:\n  photo: {type: load_image, path: in.png}\n"
                              "  hole: {type: make_mask, like: $photo, shapes: [{rect: [8, 8, 40, 40]}]}\n"
                              "  out: {type: inpaint, model: $models.m, image: $photo, mask: $hole, prompt: a window,\n"
                              "        padding_mask_crop: 4, controlnet: [{model: $models.cn}]}\n")
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    assert "crop.yaml:6:3: nodes.out" in err or "crop.yaml:6:" in err
    assert "controlnet[0] has none" in err and "fix: give controlnet[0] an image (e.g. image: $photo), or remove" in err
