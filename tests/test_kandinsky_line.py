"""The Kandinsky line the tutorial teaches beyond 2.2: Kandinsky 2.1 (prior + decoder, which also reads the prompt),
Kandinsky 2.2's depth ControlNet (a decoder of its own that takes a hint) and Kandinsky 3 (one pipeline). Each task
against plain diffusers code written as diffusers' documentation writes it (the combined pipelines AutoPipeline
builds from a decoder and its prior; the prior then the ControlNet decoder; AutoPipeline), on the same tiny model,
with a CPU generator of the node's seed: pixel-identical. And what validation refuses, at the field.

Where runner differs from the docs' code, the test says so: the docs' Kandinsky 2.2 ControlNet image-to-image
makes its embeddings with KandinskyV22PriorEmb2EmbPipeline from the prompt *and* the image; runner's img2img node
makes them from the prompt with the model's prior, as every Kandinsky 2.2 img2img (the combined pipeline) does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, write_workflow
from test_parity import PROMPT, SEED, folder, generator, quiet, runner_image, same

NEGATIVE = "lowres, bad quality"


def kandinsky21(task: str):
    """What AutoPipelineFor*.from_pretrained("kandinsky-community/kandinsky-2-1") builds: the combined pipeline of
    the decoder and the prior its model card names (here the tiny model's prior/ and decoder/)."""
    import diffusers

    root = Path(folder("kandinsky21-inpaint" if task == "inpaint" else "kandinsky21"))
    prior = diffusers.KandinskyPriorPipeline.from_pretrained(root / "prior")
    decoder = diffusers.DiffusionPipeline.from_pretrained(root / "decoder")
    combined = {"txt2img": diffusers.KandinskyCombinedPipeline, "img2img": diffusers.KandinskyImg2ImgCombinedPipeline,
                "inpaint": diffusers.KandinskyInpaintCombinedPipeline}[task]
    return quiet(combined(**decoder.components, **{f"prior_{name}": m for name, m in prior.components.items()}))


@pytest.mark.parametrize("task", ["txt2img", "img2img", "inpaint"])
def test_kandinsky21(tmp_path, task):
    node = {"txt2img": "type: txt2img", "img2img": "type: img2img, image: $photo, strength: 0.6",
            "inpaint": "type: inpaint, image: $photo, mask: $hole"}[task]
    model = "tiny:kandinsky21-inpaint" if task == "inpaint" else "tiny:kandinsky21"
    image, run = runner_image(tmp_path, f"k: {model}",
                              f"  out: {{{node}, model: $models.k, prompt: {PROMPT}, negative_prompt: '{NEGATIVE}', "
                              f"steps: 4, width: 64, height: 64, seed: {SEED}}}\n")
    extra = {"txt2img": {}, "img2img": {"image": run.image("photo"), "strength": 0.6},
             "inpaint": {"image": run.image("photo"), "mask_image": run.image("hole")}}[task]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        expected = kandinsky21(task)(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=4, width=64, height=64,
                                     generator=generator(), **extra).images[0]
    same(image, expected)
    node = run.manifest["nodes"]["out"]
    assert node["pipeline_class"] == {"txt2img": "KandinskyCombinedPipeline", "img2img": "KandinskyImg2ImgCombinedPipeline",
                                      "inpaint": "KandinskyInpaintCombinedPipeline"}[task]
    assert node["scheduler"] == "DDIMScheduler"


def test_kandinsky21_interpolate(tmp_path):
    """As diffusers' docs blend: the prior's interpolate, then the decoder with an empty prompt."""
    from diffusers import KandinskyPipeline, KandinskyPriorPipeline

    image, run = runner_image(tmp_path, "k: tiny:kandinsky21",
                              "  out: {type: interpolate, model: $models.k, steps: 3, width: 64, height: 64, "
                              f"seed: {SEED}, items: [{{prompt: {PROMPT}, weight: 0.6}}, {{image: $photo, weight: 0.4}}]}}\n")
    root = Path(folder("kandinsky21"))
    prior = quiet(KandinskyPriorPipeline.from_pretrained(root / "prior"))
    decoder = quiet(KandinskyPipeline.from_pretrained(root / "decoder"))
    embeds = prior.interpolate([PROMPT, run.image("photo")], [0.6, 0.4], generator=generator())
    same(image, decoder("", image_embeds=embeds.image_embeds, negative_image_embeds=embeds.negative_image_embeds,
                        num_inference_steps=3, width=64, height=64, generator=generator()).images[0])
    assert run.manifest["nodes"]["out"]["call"]["prompt"] == ""


def make_hint(depth):
    """diffusers' Kandinsky 2.2 ControlNet docs' make_hint, from a depth image."""
    image = np.array(depth)
    image = image[:, :, None]
    image = np.concatenate([image, image, image], axis=2)
    detected_map = torch.from_numpy(image).float() / 255.0
    return detected_map.permute(2, 0, 1)


@pytest.mark.parametrize("task", ["txt2img", "img2img"])
def test_kandinsky22_controlnet(tmp_path, task):
    import diffusers

    fields = "image: $photo, strength: 0.6" if task == "img2img" else "width: 64, height: 64"
    image, run = runner_image(tmp_path, "k: tiny:kandinsky22, hint: tiny:controlnet-kandinsky22, dpt: tiny:dpt",
                              "  depth: {type: estimate_depth, image: $photo, model: $models.dpt}\n"
                              f"  out: {{type: {task}, model: $models.k, prompt: {PROMPT}, negative_prompt: '{NEGATIVE}', "
                              f"steps: 4, seed: {SEED}, {fields}, controlnet: [{{model: $models.hint, image: $depth}}]}}\n")
    prior = quiet(diffusers.KandinskyV22PriorPipeline.from_pretrained(Path(folder("kandinsky22")) / "prior"))
    cls = "KandinskyV22ControlnetPipeline" if task == "txt2img" else "KandinskyV22ControlnetImg2ImgPipeline"
    pipe = quiet(getattr(diffusers, cls).from_pretrained(folder("controlnet-kandinsky22")))
    hint = make_hint(run.image("depth").convert("L")).unsqueeze(0)
    g = generator()
    image_emb, zero_image_emb = prior(prompt=PROMPT, negative_prompt=NEGATIVE, generator=g).to_tuple()
    inputs = {"image": run.image("photo"), "strength": 0.6} if task == "img2img" else {}
    same(image, pipe(image_embeds=image_emb, negative_image_embeds=zero_image_emb, hint=hint, num_inference_steps=4,
                     generator=g, height=64, width=64, **inputs).images[0])
    node = run.manifest["nodes"]["out"]
    assert node["pipeline_class"] == cls and node["prior_pipeline_class"] == "KandinskyV22PriorPipeline"
    assert node["prior_call"] == {"prompt": PROMPT, "negative_prompt": NEGATIVE, "num_images_per_prompt": 1}


def test_kandinsky22_controlnet_hint_takes_the_image_size(tmp_path):
    """Without width/height the image takes the hint's size; a given size resizes the hint to it."""
    image, run = runner_image(tmp_path, "k: tiny:kandinsky22, hint: tiny:controlnet-kandinsky22",
                              f"  out: {{type: txt2img, model: $models.k, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                              "controlnet: [{model: $models.hint, image: $photo}]}\n"
                              f"  wide: {{type: txt2img, model: $models.k, prompt: {PROMPT}, steps: 2, seed: {SEED}, "
                              "width: 128, height: 64, controlnet: [{model: $models.hint, image: $photo}]}\n")
    assert image.size == (64, 64)
    assert run.image("wide").size == (128, 64)
    assert run.manifest["nodes"]["wide"]["hint"] == "the condition image as RGB in [0, 1], 128x64 px"


@pytest.mark.parametrize("task", ["txt2img", "img2img"])
def test_kandinsky3(tmp_path, task):
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    fields = "image: $photo, strength: 0.6" if task == "img2img" else "width: 64, height: 64"
    image, run = runner_image(tmp_path, "k: tiny:kandinsky3",
                              f"  out: {{type: {task}, model: $models.k, prompt: {PROMPT}, steps: 4, seed: {SEED}, "
                              f"{fields}}}\n")
    if task == "txt2img":
        pipe = quiet(AutoPipelineForText2Image.from_pretrained(folder("kandinsky3")))
        expected = pipe(PROMPT, num_inference_steps=4, width=64, height=64, generator=generator()).images[0]
    else:
        pipe = quiet(AutoPipelineForImage2Image.from_pretrained(folder("kandinsky3")))
        expected = pipe(PROMPT, image=run.image("photo"), strength=0.6, num_inference_steps=4,
                        generator=generator()).images[0]
    same(image, expected)
    assert run.manifest["nodes"]["out"]["pipeline_class"] == ("Kandinsky3Pipeline" if task == "txt2img"
                                                              else "Kandinsky3Img2ImgPipeline")


BAD = """version: 1
nodes:
  photo: {type: load_image, path: in.png, size: [64, 64]}
  a: {type: txt2img, model: tiny:kandinsky3, prompt: a cat, steps: 2, scheduler: euler}
  b: {type: inpaint, model: tiny:kandinsky3, image: $photo, mask: $photo, prompt: a cat}
  c: {type: txt2img, model: tiny:kandinsky22, prompt: a cat, controlnet: [{model: tiny:controlnet-sd15, image: $photo}]}
  d: {type: txt2img, model: tiny:sd15, prompt: a cat, controlnet: [{model: tiny:controlnet-kandinsky22, image: $photo}]}
  e: {type: txt2img, model: tiny:kandinsky21, prompt: a cat, controlnet: [{model: tiny:controlnet-sd15, image: $photo}]}
  f: {type: txt2img, model: tiny:kandinsky22, controlnet: [{model: tiny:controlnet-kandinsky22, image: $photo, scale: 0.5}]}
  g: {type: txt2img, model: tiny:kandinsky21, prompt: a cat, width: 96}
  h: {type: txt2img, model: tiny:controlnet-kandinsky22, prompt: a cat}
"""


def test_what_the_kandinsky_families_cannot_do_is_refused_at_the_field(tmp_path, capsys):
    workflow = write_workflow(tmp_path, "bad.yaml", BAD)
    assert run_cli("validate", workflow) == 2
    err = capsys.readouterr().err
    expected = [
        ("4:71", "nodes.a.scheduler: scheduler 'euler' is not one Kandinsky 3 runs with", "use one of: ddpm, ddim"),
        ("5:22", "nodes.b.model: model 'tiny:kandinsky3' is a Kandinsky 3 model, which an inpaint node cannot use",
         "kandinsky-2-2-decoder-inpaint"),
        ("6:76", "nodes.c.controlnet[0].model: ControlNet 'tiny:controlnet-sd15' was made for SD 1.x/2.x checkpoints, "
                 "but 'tiny:kandinsky22' is a Kandinsky 2.2 checkpoint", "tiny:controlnet-kandinsky22 offline"),
        ("7:69", "nodes.d.controlnet[0].model: ControlNet 'tiny:controlnet-kandinsky22' was made for Kandinsky 2.2 "
                 "checkpoints, but 'tiny:sd15' is an SD 1.x/2.x checkpoint", "run 'tiny:controlnet-kandinsky22' with a "
                                                                            "Kandinsky 2.2 checkpoint"),
        ("8:62", "nodes.e.controlnet: ControlNet is not supported for Kandinsky 2.1", "remove 'controlnet'"),
        ("9:112", "nodes.f.controlnet[0].scale: Kandinsky 2.2's ControlNets take no 'scale'", "remove 'scale'"),
        ("10:62", "nodes.g.width: width 96: Kandinsky 2.1 makes images in steps of 64 pixels", "use a multiple of 64, e.g. 128"),
        ("11:22", "nodes.h.model: model 'tiny:controlnet-kandinsky22' is a ControlNet, used where a checkpoint is expected",
         "put it under a node's controlnet:"),
    ]
    for where, message, fix in expected:
        assert f"{workflow}:{where}" in err and message in err, (message, err)
        assert fix in err, fix
    assert err.rstrip().endswith(f"{len(expected)} problems found"), err
