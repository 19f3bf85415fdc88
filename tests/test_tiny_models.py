"""Tiny random models: every family builds, reloads through the normal
from_pretrained paths and runs 2 steps at 64x64 on CPU; identities and bytes
are stable."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import diffusers
import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from runner.models import tiny
from runner.models.registry import quiet_libraries

quiet_libraries()  # the same silencing runs use

REPO = pathlib.Path(__file__).resolve().parents[1]
PROMPT = "a tiny cat"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {name: tiny.ensure_tiny(name, root) for name in tiny.TINY_NAMES}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(size=(64, 64), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _mask(size=(64, 64)) -> Image.Image:
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    return Image.fromarray(mask)


def _digests(folder: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- identities

def test_identity_stable_and_distinct():
    ids = [tiny.tiny_identity(n) for n in tiny.TINY_NAMES]
    assert ids == [tiny.tiny_identity(n) for n in tiny.TINY_NAMES]
    assert len(set(ids)) == len(ids)
    for name, ident in zip(tiny.TINY_NAMES, ids):
        prefix, digest = ident.split("@")
        assert prefix == f"tiny:{name}" and len(digest) == 12 and int(digest, 16) >= 0
    assert tiny.tiny_identity("tiny:sd15") == tiny.tiny_identity("sd15")
    assert {tiny.tiny_kind(n) for n in tiny.TINY_NAMES} == {"pipeline", "controlnet", "depth-estimator", "lora",
                                                            "embedding", "pose-estimator", "object-detector",
                                                            "ip_adapter", "adapter"}


def test_unknown_name_message():
    with pytest.raises(tiny.UnknownTinyModel) as info:
        tiny.tiny_identity("sd51")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "(did you mean 'tiny:sd15'?)" in message
    assert all(f"tiny:{name}" in info.value.hint for name in tiny.TINY_NAMES)  # the fix line lists them all
    with pytest.raises(tiny.UnknownTinyModel):
        tiny.ensure_tiny("nope", pathlib.Path("/nonexistent"))


def test_identity_does_not_import_torch():
    code = ("import sys; from runner.models import tiny; tiny.tiny_identity('sdxl'); tiny.tiny_kind('dpt');"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------- building

def test_folder_layout(built):
    for name, folder in built.items():
        assert folder.name == f"{name}-{tiny.tiny_identity(name).split('@')[1]}"
        files = [p.name for p in folder.rglob("*") if p.is_file()]
        assert not [f for f in files if f.endswith((".bin", ".pt", ".pth"))], name
    assert not [p for p in next(iter(built.values())).parent.iterdir() if p.name.startswith(".")]  # no temp left
    # The refiner shares the base's VAE and second text encoder, byte for byte.
    base, refiner = _digests(built["sdxl"]), _digests(built["sdxl-refiner"])
    for key in ("vae/diffusion_pytorch_model.safetensors", "text_encoder_2/model.safetensors"):
        assert base[key] == refiner[key]
    assert base["unet/diffusion_pytorch_model.safetensors"] != refiner["unet/diffusion_pytorch_model.safetensors"]
    # Image processors are recorded backend-neutrally.
    assert "ImageProcessorPil" not in (built["kandinsky22"] / "prior" / "model_index.json").read_text()


def test_build_is_deterministic_across_processes(built, tmp_path):
    # the first two, and every model of the families added since (their T5 / XLM-R tokenizers are built offline too)
    names = ["sd15", "kandinsky22", "kandinsky21", "kandinsky3", "controlnet-kandinsky22", "sd3", "controlnet-sd3",
             "lora-sd3", "flux", "flux-schnell", "controlnet-flux", "lora-flux", "lora-sdxl", "embedding-sd15",
             "embedding-sdxl", "ip-adapter-sd15", "ip-adapter-sdxl", "ip-adapter-flux", "t2i-adapter-sd15"]
    code = ("import sys, pathlib; from runner.models import tiny; "
            f"[tiny.ensure_tiny(n, pathlib.Path(sys.argv[1])) for n in {names!r}]")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, check=True, capture_output=True)
    for name in names:
        again = tmp_path / built[name].name
        assert _digests(again) == _digests(built[name]), name


def test_existing_folder_is_reused_and_race_loser_discards(built, tmp_path, monkeypatch):
    assert tiny.ensure_tiny("dpt", built["dpt"].parent) == built["dpt"]
    other = tiny.ensure_tiny("dpt", tmp_path / "other")
    real_rename = os.rename

    def rename_after_other_process_won(src, dst):
        real_rename(other, dst)  # the other process finishes first ...
        real_rename(src, dst)  # ... so ours fails: dst exists and is not empty

    from runner.core import atomic

    monkeypatch.setattr(atomic.os, "rename", rename_after_other_process_won)
    result = tiny.ensure_tiny("dpt", tmp_path)
    assert result == tmp_path / built["dpt"].name
    assert _digests(result) == _digests(built["dpt"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["other", result.name])  # temp folder gone


# ---------------------------------------------------------------- pipelines

def test_sd15_txt2img_img2img(built):
    pipe = _quiet(diffusers.DiffusionPipeline.from_pretrained(built["sd15"]))
    assert isinstance(pipe, diffusers.StableDiffusionPipeline)
    image = pipe(PROMPT, num_inference_steps=2, generator=_gen()).images[0]
    assert image.size == (64, 64)  # unet sample_size 8 x vae factor 8
    again = pipe(PROMPT, num_inference_steps=2, generator=_gen()).images[0]
    assert np.array_equal(np.asarray(image), np.asarray(again))

    t2i = _quiet(diffusers.AutoPipelineForText2Image.from_pretrained(built["sd15"]))
    assert t2i(PROMPT, num_inference_steps=2, generator=_gen(), width=72, height=56).images[0].size == (72, 56)
    i2i = _quiet(diffusers.AutoPipelineForImage2Image.from_pretrained(built["sd15"]))
    assert isinstance(i2i, diffusers.StableDiffusionImg2ImgPipeline)
    out = i2i(PROMPT, image=_image((64, 48)), num_inference_steps=2, strength=1.0, generator=_gen()).images[0]
    assert out.size == (64, 48)


def test_sd15_inpaint(built):
    pipe = _quiet(diffusers.AutoPipelineForInpainting.from_pretrained(built["sd15-inpaint"]))
    assert isinstance(pipe, diffusers.StableDiffusionInpaintPipeline)
    assert pipe.unet.config.in_channels == 9
    out = pipe(PROMPT, image=_image(), mask_image=_mask(), num_inference_steps=2, generator=_gen(),
               height=64, width=64).images[0]
    assert out.size == (64, 64)


def test_depth2img(built):
    pipe = _quiet(diffusers.DiffusionPipeline.from_pretrained(built["sd2-depth"]))
    assert isinstance(pipe, diffusers.StableDiffusionDepth2ImgPipeline)
    out = pipe(PROMPT, image=_image(), num_inference_steps=2, strength=1.0, generator=_gen()).images[0]
    assert out.size == (64, 64)
    depth = torch.rand(1, 64, 64, generator=_gen())
    out = pipe(PROMPT, image=_image(), depth_map=depth, num_inference_steps=2, strength=1.0, generator=_gen())
    assert out.images[0].size == (64, 64)


def test_controlnet_sd15(built):
    controlnet = diffusers.ControlNetModel.from_pretrained(built["controlnet-sd15"])
    pipe = _quiet(diffusers.StableDiffusionControlNetPipeline.from_pretrained(built["sd15"], controlnet=controlnet))
    runs = [pipe(PROMPT, image=_image(seed=1), num_inference_steps=2, generator=_gen(),
                 controlnet_conditioning_scale=scale).images[0] for scale in (0.0, 1.0)]
    assert all(r.size == (64, 64) for r in runs)
    assert not np.array_equal(np.asarray(runs[0]), np.asarray(runs[1]))  # the control image matters


def test_controlnet_sdxl(built):
    controlnet = diffusers.ControlNetModel.from_pretrained(built["controlnet-sdxl"])
    pipe = _quiet(diffusers.StableDiffusionXLControlNetPipeline.from_pretrained(built["sdxl"], controlnet=controlnet))
    out = pipe(PROMPT, image=_image(seed=1), num_inference_steps=2, generator=_gen()).images[0]
    assert out.size == (64, 64)


def test_sdxl_base_to_refiner(built):
    base = _quiet(diffusers.DiffusionPipeline.from_pretrained(built["sdxl"]))
    assert isinstance(base, diffusers.StableDiffusionXLPipeline)
    assert base(PROMPT, num_inference_steps=2, generator=_gen()).images[0].size == (64, 64)
    refiner = _quiet(diffusers.DiffusionPipeline.from_pretrained(
        built["sdxl-refiner"], text_encoder_2=base.text_encoder_2, vae=base.vae))
    assert isinstance(refiner, diffusers.StableDiffusionXLImg2ImgPipeline) and refiner.text_encoder is None
    latents = base(PROMPT, num_inference_steps=4, denoising_end=0.5, output_type="latent", generator=_gen()).images
    assert latents.shape == (1, 4, 8, 8)
    out = refiner(PROMPT, image=latents, num_inference_steps=4, denoising_start=0.5, generator=_gen()).images[0]
    assert out.size == (64, 64)


def _kandinsky(folder: pathlib.Path) -> dict:
    prior = diffusers.KandinskyV22PriorPipeline.from_pretrained(folder / "prior")
    decoder = diffusers.DiffusionPipeline.from_pretrained(folder / "decoder")
    return {**decoder.components, **{f"prior_{k}": v for k, v in prior.components.items()}}


def test_kandinsky22_combined(built):
    parts = _kandinsky(built["kandinsky22"])
    steps = {"num_inference_steps": 2, "prior_num_inference_steps": 2, "height": 64, "width": 64}
    t2i = _quiet(diffusers.KandinskyV22CombinedPipeline(**parts))
    assert t2i(PROMPT, generator=_gen(), **steps).images[0].size == (64, 64)
    i2i = _quiet(diffusers.KandinskyV22Img2ImgCombinedPipeline(**parts))
    assert i2i(PROMPT, image=_image(), strength=1.0, generator=_gen(), **steps).images[0].size == (64, 64)

    inpaint_parts = _kandinsky(built["kandinsky22-inpaint"])
    assert inpaint_parts["unet"].config.in_channels == 9
    inpaint = _quiet(diffusers.KandinskyV22InpaintCombinedPipeline(**inpaint_parts))
    out = inpaint(PROMPT, image=_image(), mask_image=_mask(), generator=_gen(), **steps).images[0]
    assert out.size == (64, 64)


@pytest.mark.parametrize("name", ["dpt", "depth-anything"])
def test_depth_estimators(built, name):
    estimator = transformers.pipeline("depth-estimation", model=str(built[name]))
    result = estimator(_image((72, 56)))
    assert result["depth"].size == (72, 56)
    assert result["predicted_depth"].ndim >= 2
