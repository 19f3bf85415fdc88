"""Kandinsky 2.2: txt2img, img2img, inpaint and interpolate on a prior + decoder pair.

Loading. A Kandinsky 2.2 model is two diffusers pipelines: the prior
(KandinskyV22PriorPipeline: CLIP text/image encoders, PriorTransformer,
UnCLIPScheduler) turns a prompt into a CLIP image embedding, and the decoder
(KandinskyV22Pipeline or, for inpainting, KandinskyV22InpaintPipeline: an
image-conditioned UNet and a MoVQ) turns the embedding into pixels.

- A local folder (and every ``tiny:`` model) holds them as ``prior/`` and
  ``decoder/`` subfolders; each is loaded with ``from_pretrained``.
- A hub id names the decoder (``kandinsky-community/kandinsky-2-2-decoder``,
  ``...-decoder-inpaint``); ``AutoPipelineForText2Image.from_pretrained``
  loads it together with the prior its model card connects
  (``kandinsky-community/kandinsky-2-2-prior``).

Either way the modules are loaded once per run (one entry in the manifest's
``models_loaded``) and kept as one dict of components with the combined
pipelines' names (``unet``, ``scheduler``, ``movq``, ``prior_prior``,
``prior_text_encoder``, ...).  The task pipelines are built from that dict:
KandinskyV22CombinedPipeline (txt2img), KandinskyV22Img2ImgCombinedPipeline
(img2img) and KandinskyV22InpaintCombinedPipeline (inpaint) all take the same
components, so they share every module object; interpolate uses the
txt2img pipeline's own prior and decoder sub-pipelines.

Conventions (documented for users in the node docs / this module):
- Masks: white = repaint, black = keep, as for every runner inpaint node.  This
  is also diffusers' convention for Kandinsky inpainting since 0.19 (it
  computes ``mask = 1 - mask`` internally to get its keep-mask).  Diffusers
  grows the repainted area by one latent cell (8 pixels) on every side.
- Sizes: the decoder works in steps of 64 pixels (MoVQ factor 8, squared, as
  diffusers' ``downscale_height_and_width`` rounds); explicit ``width`` /
  ``height`` must be multiples of 64.  img2img and inpaint without a size keep
  the input image's size: they generate at the nearest multiple of 64 and
  resize the result back when the input's size is not one.
- ``steps`` and ``guidance_scale`` are the decoder's; the prior keeps diffusers'
  defaults (25 steps, guidance 4.0) unless ``pipeline_kwargs`` sets
  ``prior_num_inference_steps`` / ``prior_guidance_scale``.
- ``scheduler:`` replaces the decoder's scheduler.  Kandinsky's pipelines never
  call ``scheduler.scale_model_input``, so samplers that need it (Euler, Heun,
  KDPM2 and their ancestral variants) are refused rather than run wrongly.
- Inpaint ``strength`` is not a Kandinsky 2.2 parameter: the masked area is
  always repainted fully; a strength other than 1 is an error.
- LoRA and ControlNet are not supported on Kandinsky 2.2 nodes in this version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..calls import (
    NodeInputError,
    check_denoising_steps,
    checked_pipeline_kwargs,
    common_arguments,
    run_pipeline,
)
from ..signatures import AUTOPIPELINE_MAPPINGS
from ..sources import ModelUnavailable, missing_safetensors_explained
from .base import Family, Task

FAMILY = Family(
    key="kandinsky22",
    name="Kandinsky 2.2",
    classes=("KandinskyV22Pipeline", "KandinskyV22Img2ImgPipeline", "KandinskyV22InpaintPipeline",
             "KandinskyV22CombinedPipeline", "KandinskyV22Img2ImgCombinedPipeline",
             "KandinskyV22InpaintCombinedPipeline", "KandinskyV22PriorPipeline"),
    tasks={
        "text2image": Task("AutoPipelineForText2Image", (4,)),
        "image2image": Task("AutoPipelineForImage2Image", (4,)),
        "inpainting": Task("AutoPipelineForInpainting", (9,),
                        example="kandinsky-community/kandinsky-2-2-decoder-inpaint; tiny:kandinsky22-inpaint offline"),
        "interpolation": Task(None, (4,), classes=("KandinskyV22PriorPipeline", "KandinskyV22Pipeline")),
    },
    runner="runner.models.families.kandinsky22:generate_kandinsky",
    controlnet_class=None,
    lora=False,
    hub_hints=("kandinsky-2-2",),
    size_multiple=64,  # the decoder works in steps of 64 px (MoVQ factor 8, squared)
    examples={"checkpoint": "kandinsky-community/kandinsky-2-2-decoder; tiny:kandinsky22 offline"},
)
DECODER_HUB_IDS = {4: "kandinsky-community/kandinsky-2-2-decoder", 9: "kandinsky-community/kandinsky-2-2-decoder-inpaint"}
DECODER_TINY = {4: "tiny:kandinsky22", 9: "tiny:kandinsky22-inpaint"}
PRIOR_ARGUMENTS = ("prior_num_inference_steps", "prior_guidance_scale")
INTERPOLATE_RESERVED = ("image_embeds", "negative_image_embeds", "latents")


def generate_kandinsky(ctx, spec, f) -> dict[str, Any]:
    """A generation node (`spec`: its GenerationSpec) on a Kandinsky 2.2 prior + decoder."""
    if spec.task == "interpolation":
        return interpolate(ctx, spec, f)
    source, identity = ctx.source(f.model)
    task = FAMILY.task(spec.task)
    components = kandinsky_components(ctx.models, source, identity)
    _check_decoder(spec.task, f"a {ctx.task.type_name} node", source, components["unet"])

    pipe = _task_pipeline(ctx.models, identity, task.autopipeline, components)
    _fresh_schedulers(pipe, pipe.decoder_pipe, pipe.prior_pipe, components, f.scheduler)
    unit = _size_unit(components)
    kwargs = common_arguments(f, spec.arguments)
    _check_sizes(kwargs, unit)
    kwargs.update(spec.inputs(ctx, f))
    keep_size = None
    from PIL import Image

    if "image" in kwargs and not isinstance(kwargs["image"], Image.Image):
        raise NodeInputError(f"model '{source.label}' is a Kandinsky 2.2 model, whose pipelines take an image, not latents: "
                             "give 'image' instead of 'latents' on this node")
    if "image" in kwargs:
        image = kwargs["image"]
        if "width" not in kwargs and "height" not in kwargs:
            kwargs["width"], kwargs["height"] = (_nearest(side, unit) for side in image.size)
            if (kwargs["width"], kwargs["height"]) != image.size:
                keep_size = image.size
        else:  # one side given: the other one follows the input's aspect ratio
            kwargs.setdefault("width", _nearest(image.width * kwargs["height"] / image.height, unit))
            kwargs.setdefault("height", _nearest(image.height * kwargs["width"] / image.width, unit))
    if "mask_image" not in kwargs:
        check_denoising_steps(kwargs, pipe)
    else:
        strength = kwargs.pop("strength", 1.0)
        if strength != 1.0:
            raise NodeInputError(
                f"strength {strength}: Kandinsky 2.2 inpainting always repaints the masked area fully and takes no "
                "strength; remove 'strength' from this node (or use an SD inpainting model for partial repaints)"
            )
    kwargs.update(checked_pipeline_kwargs(pipe, f.pipeline_kwargs, spec.arguments))
    if keep_size is not None:
        ctx.record(generated_size=[kwargs["width"], kwargs["height"]], resized_to=list(keep_size))
    outputs = _run(ctx, pipe, kwargs, spec.arguments)
    if keep_size is not None:
        return _resized(outputs, keep_size)
    return outputs


def _run(ctx, pipe, kwargs: dict[str, Any], arguments: dict[str, str] | None = None) -> dict[str, Any]:
    import warnings

    with warnings.catch_warnings():
        # the combined txt2img/img2img pipelines always forward their (deprecated) callback_steps=1 to the decoder,
        # which then warns although runner uses callback_on_step_end
        warnings.filterwarnings("ignore", message=".*callback_steps.*", category=FutureWarning)
        return run_pipeline(ctx, pipe, kwargs, arguments)


# ----------------------------------------------------------------- loading
def kandinsky_components(registry, source, identity: str) -> dict[str, Any]:
    """Prior + decoder modules under the combined pipelines' names, loaded once per run."""
    if source.entry.vae:
        raise ModelUnavailable(f"model '{source.label}' is Kandinsky 2.2, which decodes with its own MoVQ (movq), not a "
                               "VAE: a vae: on its model entry cannot apply", "remove vae: from the model entry")
    return registry.cached(("kandinsky22", identity), lambda: _load(registry, source), load_label=identity, group=identity,
                           estimate=registry.estimate(source), source=source)


def _load(registry, source) -> dict[str, Any]:
    location, kwargs = registry.pretrained_args(source)
    folder = registry.model_folder(source)
    with missing_safetensors_explained(source):
        if source.kind == "hub":
            components = _load_hub(source, location, kwargs, folder)
        else:
            components = _load_local(source, Path(location) / kwargs.pop("subfolder", ""), kwargs)
    for module in components.values():
        if hasattr(module, "to") and hasattr(module, "parameters"):
            module.to(registry.device)
    return components


def _load_local(source, folder: Path, kwargs: dict) -> dict[str, Any]:
    from diffusers import DiffusionPipeline, KandinskyV22PriorPipeline

    if not ((folder / "prior").is_dir() and (folder / "decoder").is_dir()):
        what = _class_name(folder) or "Kandinsky 2.2 pipeline"
        raise ModelUnavailable(
            f"model '{source.label}' is a {what} folder alone, but Kandinsky 2.2 needs both its prior and its decoder: put "
            "them in one folder as prior/ and decoder/ subfolders (e.g. the kandinsky-community/kandinsky-2-2-prior "
            f"and {DECODER_HUB_IDS[4]} snapshots), or use the hub id {DECODER_HUB_IDS[4]}, which loads its prior with it"
        )
    prior = KandinskyV22PriorPipeline.from_pretrained(str(folder / "prior"), **kwargs)
    decoder = DiffusionPipeline.from_pretrained(str(folder / "decoder"), **kwargs)
    return _merged(prior, decoder)


def _load_hub(source, location: str, kwargs: dict, folder: Path | None) -> dict[str, Any]:
    import diffusers

    class_name = _class_name(folder) if folder is not None else None
    if class_name and "Prior" in class_name:
        raise ModelUnavailable(
            f"model '{source.label}' is a Kandinsky 2.2 prior ({class_name}); name the decoder instead "
            f"({DECODER_HUB_IDS[4]}, or {DECODER_HUB_IDS[9]} for inpainting): it loads its prior with it"
        )
    # The decoder's model card names its prior; AutoPipeline loads both into a combined pipeline.
    # Note: diffusers passes the same from_pretrained kwargs (revision included) to the prior's repo.
    pipe = diffusers.AutoPipelineForText2Image.from_pretrained(location, **kwargs)
    if not type(pipe).__name__.endswith("CombinedPipeline"):
        raise ModelUnavailable(
            f"model '{source.label}' loaded as {type(pipe).__name__} without its prior (its model card names none): "
            f"use {DECODER_HUB_IDS[4]} or a local folder with prior/ and decoder/ subfolders"
        )
    return dict(pipe.components)


def _merged(prior, decoder) -> dict[str, Any]:
    parts = {name: decoder.components[name] for name in ("unet", "scheduler", "movq")}
    parts.update({f"prior_{name}": module for name, module in prior.components.items()})
    return parts


def _class_name(folder: Path | None) -> str | None:
    import json

    index = folder / "model_index.json" if folder is not None else None
    if index is None or not index.is_file():
        return None
    try:
        return json.loads(index.read_text()).get("_class_name")
    except ValueError:
        return None


def _task_pipeline(registry, identity: str, autopipeline: str, components: dict[str, Any]):
    """The combined pipeline that `autopipeline` maps Kandinsky 2.2 to, built once from the shared components (no copy)."""

    def build():
        from diffusers.pipelines import auto_pipeline

        combined = getattr(auto_pipeline, AUTOPIPELINE_MAPPINGS[autopipeline])[FAMILY.key]
        pipe = combined(**components)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return registry.cached(("kandinsky22", identity, autopipeline), build, group=identity)


# ----------------------------------------------------------------- checks
def _check_decoder(task: str, used_by: str, source, unet) -> None:
    from .checks import channel_problem

    problem = channel_problem(FAMILY, task, unet.config.in_channels, source.label, used_by)
    if problem is not None:
        raise ModelUnavailable(*problem)


def _size_unit(components: dict[str, Any]) -> int:
    factor = 2 ** (len(components["movq"].config.block_out_channels) - 1)
    return factor * factor


def _check_sizes(kwargs: dict[str, Any], unit: int) -> None:
    for side in ("width", "height"):
        value = kwargs.get(side)
        if value is not None and value % unit:
            raise NodeInputError(
                f"{side} {value}: Kandinsky 2.2 makes images in steps of {unit} pixels (diffusers would round it up to "
                f"{-(-value // unit) * unit}); use a multiple of {unit}, e.g. {max(unit, round(value / unit) * unit)}"
            )


def _nearest(value: float, unit: int) -> int:
    return max(unit, int(round(value / unit)) * unit)


def _resized(outputs: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    from PIL import Image

    images = [image.resize(size, Image.LANCZOS) for image in outputs["images"]]
    return {**outputs, "image": images[0], "images": images}


# ------------------------------------------------------------- schedulers
def _fresh_schedulers(pipe, decoder, prior, components: dict[str, Any], name: str | None) -> None:
    """A new decoder scheduler (the checkpoint's own, or `name`) and a new prior scheduler for this node."""
    from ..schedulers import make_scheduler

    base = components["scheduler"]
    scheduler = make_scheduler(name, base.config, type(base))
    if name is not None and not _scales_nothing(make_scheduler(name, base.config, type(base))):
        raise NodeInputError(
            f"scheduler '{name}' ({type(scheduler).__name__}) needs its model inputs scaled, which Kandinsky 2.2's "
            "pipelines do not do: use ddpm (the default), ddim, dpmpp_2m, dpmpp_2m_karras, deis, unipc or pndm"
        )
    base_prior = components["prior_scheduler"]
    prior_scheduler = type(base_prior).from_config(base_prior.config)
    for target in (pipe, decoder):
        if target is not None:
            target.scheduler = scheduler
    if pipe is not None and hasattr(pipe, "prior_scheduler"):
        pipe.prior_scheduler = prior_scheduler
    prior.scheduler = prior_scheduler


def _scales_nothing(scheduler) -> bool:
    """True when the scheduler's scale_model_input is the identity and its initial noise sigma is 1."""
    import torch

    scheduler.set_timesteps(2)
    sample = torch.ones(1, 1, 1, 1)
    scaled = scheduler.scale_model_input(sample, scheduler.timesteps[0])
    return float(getattr(scheduler, "init_noise_sigma", 1.0)) == 1.0 and torch.equal(scaled, sample)


# ------------------------------------------------------------ interpolate
def interpolate(ctx, spec, f) -> dict[str, Any]:
    """The prior's weighted blend of prompts and images (the spec's inputs: texts and PIL images), decoded by the
    decoder. The spec's `arguments` (node field -> call argument) are the names pipeline_kwargs may not set."""
    import torch

    conditions, arguments = spec.inputs(ctx, f)["conditions"], spec.arguments
    source, identity = ctx.source(f.model)
    components = kandinsky_components(ctx.models, source, identity)
    _check_decoder("interpolation", "an interpolate node", source, components["unet"])
    combined = _task_pipeline(ctx.models, identity, "AutoPipelineForText2Image", components)
    prior, decoder = combined.prior_pipe, combined.decoder_pipe
    _fresh_schedulers(None, decoder, prior, components, f.scheduler)
    if f.num_images != 1:
        raise NodeInputError(f"num_images {f.num_images}: an interpolate node makes one image; remove num_images")

    extra = dict(f.pipeline_kwargs)
    prior_arguments = {}
    for name in PRIOR_ARGUMENTS:
        if name in extra:
            prior_arguments[name.removeprefix("prior_")] = extra.pop(name)
    for name in INTERPOLATE_RESERVED:
        if name in extra:
            raise NodeInputError(f"pipeline_kwargs.{name} is not allowed: the interpolate node computes it from its items")
    weights = [item.weight for item in f.items]
    if sum(weights) <= 0:
        raise NodeInputError("items: the weights add up to 0; give at least one item a positive weight")

    generator = torch.Generator("cpu").manual_seed(ctx.seed)
    with torch.inference_mode():
        embeds = prior.interpolate(
            conditions, weights, generator=generator,
            negative_prior_prompt=f.negative_prompt, negative_prompt=f.negative_prompt or "", **prior_arguments,
        )
    ctx.record(prior_pipeline_class=type(prior).__name__, prior_call={
        "items": [{"prompt": item.prompt} if item.prompt is not None else {"image": str(item.image)} for item in f.items],
        "weights": weights, **prior_arguments})

    kwargs = {"image_embeds": embeds.image_embeds, "negative_image_embeds": embeds.negative_image_embeds}
    for field, argument in (("steps", "num_inference_steps"), ("guidance_scale", "guidance_scale"),
                            ("width", "width"), ("height", "height")):
        if getattr(f, field) is not None:
            kwargs[argument] = getattr(f, field)
    _check_sizes(kwargs, _size_unit(components))
    kwargs.update(checked_pipeline_kwargs(decoder, extra, arguments))
    outputs = _run(ctx, decoder, kwargs)
    return {"image": outputs["image"]}


__all__ = ["generate_kandinsky", "interpolate", "kandinsky_components"]
