"""Families whose checkpoint is a prior + decoder pair (Kandinsky 2.1 and 2.2): txt2img, img2img, inpaint and
interpolate, and a decoder that takes a hint (Kandinsky 2.2's depth ControlNet).

Each family declares its settings (its names for messages, prior class, decoder parts: a `Line`, less the family)
as its Family's `prior_decoder`; the code below takes them as an argument and never tests which family it runs.

Loading. Such a model is two diffusers pipelines: the prior (CLIP text/image encoders, PriorTransformer,
UnCLIPScheduler) turns a prompt into a CLIP image embedding, and the decoder (an image-conditioned UNet and a MoVQ;
Kandinsky 2.1's also reads the prompt through its multilingual CLIP) turns the embedding into pixels.

- A local folder (and every ``tiny:`` model) holds them as ``prior/`` and ``decoder/`` subfolders; each is loaded
  with ``from_pretrained``.
- A hub id names the decoder (``kandinsky-community/kandinsky-2-2-decoder``, ``kandinsky-community/kandinsky-2-1``,
  their ``-inpaint`` variants); ``AutoPipelineForText2Image.from_pretrained`` loads it together with the prior its
  model card connects.

Either way the modules are loaded once per run (one entry in the manifest's ``models_loaded``) and kept as one dict
of components with the combined pipelines' names (``unet``, ``scheduler``, ``movq``, ``prior_prior``,
``prior_text_encoder``, ...). The task pipelines are built from that dict: the family's combined txt2img, img2img
and inpaint pipelines (what diffusers' AutoPipelines map it to) all take the same components, so they share every
module object; interpolate uses the txt2img pipeline's own prior and decoder sub-pipelines.

Conventions (documented for users in docs/how-to/models.md):
- Masks: white = repaint, black = keep, as for every runner inpaint node (diffusers' convention for Kandinsky
  inpainting since 0.19). Diffusers grows the repainted area by one latent cell (8 pixels) on every side.
- Sizes: the decoder works in steps of 64 pixels (MoVQ factor 8, squared, as diffusers'
  ``downscale_height_and_width`` rounds); explicit ``width`` / ``height`` must be multiples of 64. img2img and
  inpaint without a size keep the input image's size: they generate at the nearest multiple of 64 and resize the
  result back when the input's size is not one.
- ``steps`` and ``guidance_scale`` are the decoder's; the prior keeps diffusers' defaults (25 steps, guidance 4.0)
  unless ``pipeline_kwargs`` sets ``prior_num_inference_steps`` / ``prior_guidance_scale``.
- ``scheduler:`` replaces the decoder's scheduler. These pipelines never call ``scheduler.scale_model_input``, so
  samplers that need it (Euler, Heun, KDPM2 and their ancestral variants) are refused rather than run wrongly.
- Inpaint ``strength`` is not a parameter of these pipelines: the masked area is always repainted fully; a strength
  other than 1 is an error.
- No LoRAs (diffusers loads none into these pipelines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from .base import Family

PRIOR_ARGUMENTS = ("prior_num_inference_steps", "prior_guidance_scale")
INTERPOLATE_RESERVED = ("image_embeds", "negative_image_embeds", "latents")


@dataclass(frozen=True)
class Line:
    """What the shared prior + decoder code needs to know of one family."""

    family: Family
    autopipeline_key: str  # its key in diffusers' AutoPipeline mappings (the combined pipelines)
    prior_class: str  # the prior pipeline's class
    decoder_parts: tuple[str, ...]  # the decoder's components the combined pipelines take (besides prior_*)
    decoder_hub_id: str  # the txt2img decoder on the hub (it loads its prior with it), for messages
    prior_hub_id: str
    decoder_reads_prompt: bool = False  # Kandinsky 2.1's decoder encodes the prompt too (interpolate passes "")
    # task -> the pipeline class of a decoder that takes a hint (a ControlNet decoder), for the tasks it does
    hint_decoders: dict[str, str] = field(default_factory=dict)


def line_of(family: Family) -> Line:
    """The family's prior + decoder settings (its declaration's `prior_decoder`)."""
    return Line(family=family, **family.prior_decoder)


def generate(ctx, spec, f) -> dict[str, Any]:
    """A generation node (`spec`: its GenerationSpec) on a prior + decoder model (the family's runner)."""
    source, identity = ctx.source(f.model)
    line = line_of(ctx.models.family(source, identity))
    if spec.task == "interpolation":
        return interpolate(line, ctx, spec, f)
    components = components_of(line, ctx.models, source, identity)
    _check_decoder(line, spec.task, f"a {ctx.task.type_name} node", source, components["unet"])
    if getattr(f, "controlnet", None):
        return _generate_hinted(line, ctx, spec, f, components)

    pipe = _task_pipeline(line, ctx.models, identity, line.family.task(spec.task).autopipeline, components)
    _fresh_schedulers(line, pipe, pipe.decoder_pipe, pipe.prior_pipe, components, f.scheduler)
    unit = _size_unit(components)
    kwargs = common_arguments(f, spec.arguments)
    _check_sizes(line, kwargs, unit)
    kwargs.update(spec.inputs(ctx, f))
    _refuse_latents(line, source, kwargs)
    keep_size = _fit_size(kwargs, kwargs.get("image"), unit)
    if "mask_image" not in kwargs:
        check_denoising_steps(kwargs, pipe)
    else:
        _refuse_strength(line, kwargs)
    kwargs.update(checked_pipeline_kwargs(pipe, f.pipeline_kwargs, spec.arguments))
    if keep_size is not None:
        ctx.record(generated_size=[kwargs["width"], kwargs["height"]], resized_to=list(keep_size))
    outputs = _run(ctx, pipe, kwargs, spec.arguments)
    return _resized(outputs, keep_size) if keep_size is not None else outputs


def _refuse_latents(line: Line, source, kwargs: dict[str, Any]) -> None:
    from PIL import Image

    if "image" in kwargs and not isinstance(kwargs["image"], Image.Image):
        raise NodeInputError(f"model '{source.label}' is a {line.family.name} model, whose pipelines take an image, not "
                             "latents: give 'image' instead of 'latents' on this node")


def _refuse_strength(line: Line, kwargs: dict[str, Any]) -> None:
    strength = kwargs.pop("strength", 1.0)
    if strength != 1.0:
        raise NodeInputError(
            f"strength {strength}: {line.family.name} inpainting always repaints the masked area fully and takes no "
            "strength; remove 'strength' from this node (or use an SD inpainting model for partial repaints)")


def _fit_size(kwargs: dict[str, Any], image, unit: int) -> tuple[int, int] | None:
    """Without width/height, the size of `image` (the input, or a ControlNet's condition) in steps of `unit`, with
    one side given the other following its aspect ratio; returns the size to resize the result back to, if any."""
    if image is None:
        return None
    if "width" not in kwargs and "height" not in kwargs:
        kwargs["width"], kwargs["height"] = (_nearest(side, unit) for side in image.size)
        return image.size if (kwargs["width"], kwargs["height"]) != image.size else None
    kwargs.setdefault("width", _nearest(image.width * kwargs["height"] / image.height, unit))
    kwargs.setdefault("height", _nearest(image.height * kwargs["width"] / image.width, unit))
    return None


def _run(ctx, pipe, kwargs: dict[str, Any], arguments: dict[str, str] | None = None, generator=None) -> dict[str, Any]:
    import warnings

    with warnings.catch_warnings():
        # the combined txt2img/img2img pipelines always forward their (deprecated) callback_steps=1 to the decoder,
        # which then warns although runner uses callback_on_step_end
        warnings.filterwarnings("ignore", message=".*callback_steps.*", category=FutureWarning)
        return run_pipeline(ctx, pipe, kwargs, arguments, generator=generator)


# ----------------------------------------------------------------- loading
def components_of(line: Line, registry, source, identity: str) -> dict[str, Any]:
    """Prior + decoder modules under the combined pipelines' names, loaded once per run."""
    if source.entry.vae:
        raise ModelUnavailable(f"model '{source.label}' is {line.family.name}, which decodes with its own MoVQ (movq), "
                               "not a VAE: a vae: on its model entry cannot apply", "remove vae: from the model entry")
    return registry.cached((line.family.key, identity), lambda: _load(line, registry, source), load_label=identity,
                           group=identity, estimate=registry.estimate(source), source=source)


def _load(line: Line, registry, source) -> dict[str, Any]:
    location, kwargs = registry.pretrained_args(source)
    folder = registry.model_folder(source)
    with missing_safetensors_explained(source):
        if source.kind == "hub":
            components = _load_hub(line, source, location, kwargs, folder)
        else:
            components = _load_local(line, source, Path(location) / kwargs.pop("subfolder", ""), kwargs)
    for module in components.values():
        if hasattr(module, "to") and hasattr(module, "parameters"):
            module.to(registry.device)
    return components


def _load_local(line: Line, source, folder: Path, kwargs: dict) -> dict[str, Any]:
    import diffusers

    if not ((folder / "prior").is_dir() and (folder / "decoder").is_dir()):
        what = _class_name(folder) or f"{line.family.name} pipeline"
        raise ModelUnavailable(
            f"model '{source.label}' is a {what} folder alone, but {line.family.name} needs both its prior and its "
            f"decoder: put them in one folder as prior/ and decoder/ subfolders (e.g. the {line.prior_hub_id} and "
            f"{line.decoder_hub_id} snapshots), or use the hub id {line.decoder_hub_id}, which loads its prior with it"
        )
    prior = getattr(diffusers, line.prior_class).from_pretrained(str(folder / "prior"), **kwargs)
    decoder = diffusers.DiffusionPipeline.from_pretrained(str(folder / "decoder"), **kwargs)
    parts = {name: decoder.components[name] for name in line.decoder_parts}
    parts.update({f"prior_{name}": module for name, module in prior.components.items()})
    return parts


def _load_hub(line: Line, source, location: str, kwargs: dict, folder: Path | None) -> dict[str, Any]:
    import diffusers

    class_name = _class_name(folder) if folder is not None else None
    if class_name and "Prior" in class_name:
        raise ModelUnavailable(
            f"model '{source.label}' is a {line.family.name} prior ({class_name}); name the decoder instead "
            f"({line.decoder_hub_id}, or its inpainting decoder): it loads its prior with it"
        )
    # The decoder's model card names its prior; AutoPipeline loads both into a combined pipeline.
    # Note: diffusers passes the same from_pretrained kwargs (revision included) to the prior's repo.
    pipe = diffusers.AutoPipelineForText2Image.from_pretrained(location, **kwargs)
    if not type(pipe).__name__.endswith("CombinedPipeline"):
        raise ModelUnavailable(
            f"model '{source.label}' loaded as {type(pipe).__name__} without its prior (its model card names none): "
            f"use {line.decoder_hub_id} or a local folder with prior/ and decoder/ subfolders"
        )
    return dict(pipe.components)


def _class_name(folder: Path | None) -> str | None:
    import json

    index = folder / "model_index.json" if folder is not None else None
    if index is None or not index.is_file():
        return None
    try:
        return json.loads(index.read_text()).get("_class_name")
    except ValueError:
        return None


def _task_pipeline(line: Line, registry, identity: str, autopipeline: str, components: dict[str, Any]):
    """The combined pipeline that `autopipeline` maps the family to, built once from the shared components (no copy)."""

    def build():
        from diffusers.pipelines import auto_pipeline

        combined = getattr(auto_pipeline, AUTOPIPELINE_MAPPINGS[autopipeline])[line.autopipeline_key]
        pipe = combined(**components)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return registry.cached((line.family.key, identity, autopipeline), build, group=identity)


# ----------------------------------------------------------------- checks
def _check_decoder(line: Line, task: str, used_by: str, source, unet) -> None:
    from .checks import channel_problem

    problem = channel_problem(line.family, task, unet.config.in_channels, source.label, used_by)
    if problem is not None:
        raise ModelUnavailable(*problem)


def _size_unit(components: dict[str, Any]) -> int:
    factor = 2 ** (len(components["movq"].config.block_out_channels) - 1)
    return factor * factor


def _check_sizes(line: Line, kwargs: dict[str, Any], unit: int) -> None:
    for side in ("width", "height"):
        value = kwargs.get(side)
        if value is not None and value % unit:
            raise NodeInputError(
                f"{side} {value}: {line.family.name} makes images in steps of {unit} pixels (diffusers would round it "
                f"up to {-(-value // unit) * unit}); use a multiple of {unit}, e.g. {max(unit, round(value / unit) * unit)}"
            )


def _nearest(value: float, unit: int) -> int:
    return max(unit, int(round(value / unit)) * unit)


def _resized(outputs: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    from PIL import Image

    images = [image.resize(size, Image.LANCZOS) for image in outputs["images"]]
    return {**outputs, "image": images[0], "images": images}


# ------------------------------------------------------------- schedulers
def _fresh_schedulers(line: Line, pipe, decoder, prior, components: dict[str, Any], name: str | None,
                      base=None) -> None:
    """A new decoder scheduler (the checkpoint's own, or `name`; `base`: the scheduler it is made from, default the
    checkpoint's decoder's) and a new prior scheduler for this node."""
    from ..schedulers import make_scheduler

    base = base if base is not None else components["scheduler"]
    scheduler = make_scheduler(name, base.config, type(base))
    if name is not None and not _scales_nothing(make_scheduler(name, base.config, type(base))):
        raise NodeInputError(
            f"scheduler '{name}' ({type(scheduler).__name__}) needs its model inputs scaled, which {line.family.name}'s "
            "pipelines do not do: use ddpm, ddim, dpmpp_2m, dpmpp_2m_karras, deis, unipc or pndm"
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


def _prior_arguments(extra: dict[str, Any]) -> dict[str, Any]:
    """pipeline_kwargs' prior_num_inference_steps / prior_guidance_scale, taken out of `extra` for the prior call."""
    return {name.removeprefix("prior_"): extra.pop(name) for name in PRIOR_ARGUMENTS if name in extra}


# ------------------------------------------------------------ interpolate
def interpolate(line: Line, ctx, spec, f) -> dict[str, Any]:
    """The prior's weighted blend of prompts and images (the spec's inputs: texts and PIL images), decoded by the
    decoder. The spec's `arguments` (node field -> call argument) are the names pipeline_kwargs may not set."""
    import torch

    conditions, arguments = spec.inputs(ctx, f)["conditions"], spec.arguments
    source, identity = ctx.source(f.model)
    components = components_of(line, ctx.models, source, identity)
    _check_decoder(line, "interpolation", "an interpolate node", source, components["unet"])
    combined = _task_pipeline(line, ctx.models, identity, "AutoPipelineForText2Image", components)
    prior, decoder = combined.prior_pipe, combined.decoder_pipe
    _fresh_schedulers(line, None, decoder, prior, components, f.scheduler)
    if f.num_images != 1:
        raise NodeInputError(f"num_images {f.num_images}: an interpolate node makes one image; remove num_images")

    extra = dict(f.pipeline_kwargs)
    prior_arguments = _prior_arguments(extra)
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
    if line.decoder_reads_prompt:  # as diffusers' docs call it: the embeddings carry the content, the prompt is ""
        kwargs["prompt"] = ""
    for name, argument in (("steps", "num_inference_steps"), ("guidance_scale", "guidance_scale"),
                           ("width", "width"), ("height", "height")):
        if getattr(f, name) is not None:
            kwargs[argument] = getattr(f, name)
    _check_sizes(line, kwargs, _size_unit(components))
    kwargs.update(checked_pipeline_kwargs(decoder, extra, arguments))
    outputs = _run(ctx, decoder, kwargs)  # the decoder draws from a generator of its own, seeded like the prior's
    return {"image": outputs["image"]}


# ------------------------------------------------- a decoder that takes a hint
def _generate_hinted(line: Line, ctx, spec, f, components: dict[str, Any]) -> dict[str, Any]:
    """A txt2img or img2img node with a ControlNet on a family whose ControlNet is a whole decoder that takes a hint
    (Kandinsky 2.2's depth ControlNet), as diffusers' docs run it: the model's prior turns the prompt into image
    embeddings, then the ControlNet decoder makes the image from them and the hint (the condition image as an RGB
    tensor in [0, 1], as the docs' make_hint builds it from a depth map)."""
    import torch

    if len(f.controlnet) != 1:
        raise NodeInputError(f"controlnet: {line.family.name} takes one ControlNet decoder, not {len(f.controlnet)}; "
                             "keep one item")
    item = f.controlnet[0]
    for name in spec.controlnet_arguments:
        if getattr(item, name) is not None:
            raise NodeInputError(f"controlnet[0].{name}: {line.family.name}'s ControlNet decoder has no such "
                                 f"setting (its hint always acts in full); remove '{name}'")
    registry = ctx.models
    source, identity = ctx.source(f.model)
    cn_source, cn_identity = ctx.source(item.model)
    from ..configs import component_config
    from .checks import controlnet_problem

    config = component_config(cn_source)  # what its files say, before loading it as a decoder
    problem = controlnet_problem(line.family, source.label, cn_source.label, config) if config else None
    if problem is not None:
        raise ModelUnavailable(*problem)
    loaded = registry.controlnet(cn_source, cn_identity, line.family.controlnet_class)
    problem = controlnet_problem(line.family, source.label, cn_source.label, {"_class_name": type(loaded).__name__})
    if problem is not None:
        raise ModelUnavailable(*problem)
    wanted = line.hint_decoders[spec.task]
    decoder = _hint_decoder(registry, cn_identity, loaded, wanted)
    combined = _task_pipeline(line, registry, ctx.source(f.model)[1], "AutoPipelineForText2Image", components)
    prior = combined.prior_pipe
    _fresh_schedulers(line, None, decoder, prior, components, f.scheduler, base=loaded.scheduler)

    kwargs = common_arguments(f, spec.arguments)
    unit = _size_unit({"movq": decoder.movq})
    _check_sizes(line, kwargs, unit)
    kwargs.update(spec.inputs(ctx, f))
    _refuse_latents(line, source, kwargs)
    condition = ctx.load(item.image).convert("RGB")
    keep_size = _fit_size(kwargs, kwargs.get("image", condition), unit)
    if "image" in kwargs:
        check_denoising_steps(kwargs, decoder)
    prior_kwargs = {name: kwargs.pop(argument) for name, argument in
                    (("prompt", "prompt"), ("negative_prompt", "negative_prompt"),
                     ("num_images_per_prompt", "num_images_per_prompt")) if argument in kwargs}
    extra = dict(f.pipeline_kwargs)
    prior_kwargs.update(_prior_arguments(extra))
    kwargs.update(checked_pipeline_kwargs(decoder, extra, spec.arguments))

    generator = torch.Generator("cpu").manual_seed(ctx.seed)  # one generator for both calls, as the docs do
    ctx.phase("running the prior (prompt to image embedding)")
    with torch.inference_mode():
        image_embeds, negative_image_embeds = prior(**prior_kwargs, generator=generator).to_tuple()
    ctx.record(prior_pipeline_class=type(prior).__name__, prior_call=dict(prior_kwargs),
               controlnets=[{"model": cn_identity, "image": str(item.image)}],
               hint=f"the condition image as RGB in [0, 1], {kwargs['width']}x{kwargs['height']} px")
    hint = _hint(condition, (kwargs["width"], kwargs["height"]), image_embeds.shape[0])
    kwargs.update(image_embeds=image_embeds, negative_image_embeds=negative_image_embeds, hint=hint)
    if keep_size is not None:
        ctx.record(generated_size=[kwargs["width"], kwargs["height"]], resized_to=list(keep_size))
    outputs = _run(ctx, decoder, kwargs, spec.arguments, generator=generator)
    return _resized(outputs, keep_size) if keep_size is not None else outputs


def _hint_decoder(registry, identity: str, loaded, wanted: str):
    """The ControlNet decoder pipeline of class `wanted`, sharing the loaded one's modules."""
    if type(loaded).__name__ == wanted:
        loaded.set_progress_bar_config(disable=True)
        return loaded

    def build():
        import diffusers

        pipe = getattr(diffusers, wanted)(**loaded.components)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return registry.cached(("hint-decoder", identity, wanted), build, group=identity)


def _hint(image, size: tuple[int, int], batch: int):
    """The condition image as diffusers' docs build a hint: RGB values / 255 as a (batch, 3, H, W) float tensor, at the
    size of the image made (the hint joins the latents, so it must match)."""
    import numpy as np
    import torch
    from PIL import Image

    if image.size != size:
        image = image.resize(size, Image.BICUBIC)
    hint = torch.from_numpy(np.array(image)).float() / 255.0
    return hint.permute(2, 0, 1).unsqueeze(0).repeat(batch, 1, 1, 1)


__all__ = ["Line", "components_of", "generate", "interpolate", "line_of"]


# ------------------------------------------------------------------ export
FIT_SIZE_HELPER = '''
def fitted_size(image, width, height, unit):
    """(width, height, keep_size): without a size, the image's in the decoder's steps of `unit` pixels (keep_size: the
    image's, to resize the result back to, where it differs); one side given, the other following its aspect ratio."""
    def nearest(value):
        return max(unit, int(round(value / unit)) * unit)

    if width is None and height is None:
        width, height = nearest(image.width), nearest(image.height)
        return width, height, (image.size if (width, height) != image.size else None)
    if width is None:
        width = nearest(image.width * height / image.height)
    if height is None:
        height = nearest(image.height * width / image.width)
    return width, height, None
'''


def export(script, spec, f) -> None:
    """A generation node on a prior + decoder model, written as the script does it (`generate`'s twin): the prior
    and decoder loaded once as one set of the combined pipelines' components, the task's combined pipeline built from
    them, sizes fitted to the decoder's steps at run time, a hint decoder for a ControlNet, interpolation through the
    prior's `interpolate`."""
    from .. import families
    from ..export_generation import call_lines, generation_outputs, wanted_latents

    source = script.source(f.model)
    line = line_of(families.detect(source))
    parts = _export_components(line, script, f.model, source)
    if spec.task == "interpolation":
        return _export_interpolate(line, script, spec, f, parts)
    if getattr(f, "controlnet", None):
        return _export_hinted(line, script, spec, f, parts)
    import inspect

    from diffusers.pipelines import auto_pipeline

    autopipeline = line.family.task(spec.task).autopipeline
    cls = getattr(auto_pipeline, AUTOPIPELINE_MAPPINGS[autopipeline])[line.autopipeline_key]
    pipe = _export_task_pipeline(script, parts, cls.__name__)
    _export_schedulers(script, f.scheduler, parts, [pipe, f"{pipe}.decoder_pipe"], [f"{pipe}.prior_pipe"],
                       f"{pipe}.prior_scheduler", key=pipe)
    kwargs = {argument: script.expr(field) for field, argument in spec.arguments.items()
              if getattr(f, field, None) is not None}
    kwargs.update(spec.export_inputs(script, f))
    if "mask_image" in kwargs:
        kwargs.pop("strength", None)  # validated 1.0: these pipelines always repaint the masked area fully
    fitted = "image" in kwargs
    if fitted:
        _export_fit(script, kwargs, kwargs["image"], f"{pipe}.movq")
    parameters = inspect.signature(cls.__call__).parameters
    for name, value in f.pipeline_kwargs.items():
        if isinstance(value, list) and name in parameters and "tuple" in str(parameters[name].annotation).lower():
            value = tuple(value)
        kwargs[name] = script.expr("pipeline_kwargs", name, value=value)
    keep_latents = wanted_latents(script, kwargs, parameters, line.family.latents)
    call_lines(script, pipe, kwargs, "result")
    generation_outputs(script, kwargs, keep_latents, resize_to="keep_size" if fitted else None)


def _export_components(line: Line, script, ref: str, source) -> str:
    """The variable of the model's combined text-to-image pipeline (its components: everyone's), loaded once."""
    from diffusers.pipelines import auto_pipeline

    from ..export_generation import _model_name, pretrained_call, source_key

    key = ("prior-decoder", *source_key(source))
    if key in script.model_vars:
        return script.model_vars[key]
    variable = script.name(_model_name(script, ref))
    location, kwargs, comment = pretrained_call(script, source, "checkpoint")
    combined = getattr(auto_pipeline, AUTOPIPELINE_MAPPINGS["AutoPipelineForText2Image"])[line.autopipeline_key].__name__
    if source.kind == "hub":
        script.need("from diffusers import AutoPipelineForText2Image")
        script.model_line(f"# the decoder's model card names its prior: AutoPipeline loads both into {combined}")
        script.model_line(f"{variable} = AutoPipelineForText2Image.from_pretrained({', '.join([location, *kwargs])})")
    else:
        if source.kind == "file":
            raise script.unsupported(f"'{source.label}' is a single file; {line.family.name} loads a folder or hub id")
        folder = script.registry.model_folder(source)
        subfolder = source.entry.subfolder
        folder = folder / subfolder if subfolder else folder
        kwargs = [k for k in kwargs if not k.startswith("subfolder=")]
        prior, decoder = script.name(f"{variable}_prior"), script.name(f"{variable}_decoder")
        script.need(f"from diffusers import {line.prior_class}, DiffusionPipeline, {combined}")
        script.model_line(f"# {source.label}: {line.family.name}'s prior and decoder, in prior/ and decoder/{comment}")
        script.model_line(f"{prior} = {line.prior_class}.from_pretrained("
                          f"{', '.join([script.literal(str((folder / 'prior').resolve())), *kwargs])})")
        script.model_line(f"{decoder} = DiffusionPipeline.from_pretrained("
                          f"{', '.join([script.literal(str((folder / 'decoder').resolve())), *kwargs])})")
        script.model_line(f"{variable} = {combined}(")
        script.model_line(f"    **{{name: {decoder}.components[name] for name in {script.literal(list(line.decoder_parts))}}},")
        script.model_line(f"    **{{f\"prior_{{name}}\": module for name, module in {prior}.components.items()}},")
        script.model_line(")")
    script.model_line(f"{variable}.to(device)")
    script.model_vars[key] = variable
    return variable


def _export_task_pipeline(script, parts: str, class_name: str) -> str:
    """The task's combined pipeline, built once from the shared components (runner's _task_pipeline)."""
    key = ("combined", parts, class_name)
    if key not in script.model_vars:
        variable = script.name(f"{parts}_{class_name.removeprefix('Kandinsky').removesuffix('CombinedPipeline').lower() or 'txt2img'}")
        script.need(f"from diffusers import {class_name}")
        script.model_line(f"{variable} = {class_name}(**{parts}.components)")
        script.model_vars[key] = variable
    return script.model_vars[key]


def _export_schedulers(script, name: str | None, parts: str, decoders: list[str], priors: list[str],
                       prior_attribute: str | None, key: str, base: str | None = None) -> None:
    """A named decoder scheduler (from the decoder's config) and a fresh prior scheduler, as runner's
    _fresh_schedulers sets them; back to the checkpoint's own after a node that named one."""
    from ..schedulers import UNSCALED_SCHEDULERS

    state = ("scheduler", key)
    if name is None and not script.state.get(state):
        return
    base = base or f"{parts}.components[\"scheduler\"]"
    if name is None:
        script.line(f"scheduler = type({base}).from_config({base}.config)  # the checkpoint's own")
    else:
        class_name, overrides = UNSCALED_SCHEDULERS[name]
        script.need(f"from diffusers import {class_name}")
        extra = "".join(f", {k}={script.literal(v)}" for k, v in overrides.items())
        script.line(f"scheduler = {class_name}.from_config({base}.config{extra})  # {name}")
    script.line(f"prior_scheduler = type({parts}.prior_scheduler).from_config({parts}.prior_scheduler.config)")
    for target in decoders:
        script.line(f"{target}.scheduler = scheduler")
    if prior_attribute:
        script.line(f"{prior_attribute} = prior_scheduler")
    for target in priors:
        script.line(f"{target}.scheduler = prior_scheduler")
    script.state[state] = name is not None


def _export_fit(script, kwargs: dict[str, str], image: str, movq: str) -> None:
    script.helper("fitted_size", FIT_SIZE_HELPER)
    script.line(f"unit = (2 ** (len({movq}.config.block_out_channels) - 1)) ** 2  # the decoder's size step")
    width, height = kwargs.pop("width", "None"), kwargs.pop("height", "None")
    script.line(f"width, height, keep_size = fitted_size({image}, {width}, {height}, unit)")
    kwargs["width"], kwargs["height"] = "width", "height"


def _export_interpolate(line: Line, script, spec, f, parts: str) -> None:
    from diffusers.pipelines import auto_pipeline

    from ..export_generation import call_lines

    cls = getattr(auto_pipeline, AUTOPIPELINE_MAPPINGS["AutoPipelineForText2Image"])[line.autopipeline_key]
    combined = _export_task_pipeline(script, parts, cls.__name__)
    prior, decoder = f"{combined}.prior_pipe", f"{combined}.decoder_pipe"
    _export_schedulers(script, f.scheduler, parts, [decoder], [prior], None, key=combined + ".interpolate")
    extra = dict(f.pipeline_kwargs)
    prior_arguments = _prior_arguments(extra)
    items = []
    for index, item in enumerate(f.items):
        items.append(script.expr("items", index, "prompt") if item.prompt is not None else script.image(item.image, "RGB"))
    weights = [script.expr("items", index, "weight") for index in range(len(f.items))]
    negative = script.expr("negative_prompt") if f.negative_prompt is not None else "None"
    script.line(f"generator = torch.Generator(\"cpu\").manual_seed({script.seed})  # {script.seed_comment()}")
    arguments = [f"[{', '.join(items)}]", f"[{', '.join(weights)}]", "generator=generator",
                 f"negative_prior_prompt={negative}",
                 f"negative_prompt={negative if f.negative_prompt else script.literal('')}",
                 *[f"{name}={script.literal(value)}" for name, value in prior_arguments.items()]]
    script.line(f"embeds = {prior}.interpolate({', '.join(arguments)})")
    kwargs = {"image_embeds": "embeds.image_embeds", "negative_image_embeds": "embeds.negative_image_embeds"}
    if line.decoder_reads_prompt:
        kwargs["prompt"] = '""'  # as diffusers' docs call it: the embeddings carry the content
    for name, argument in (("steps", "num_inference_steps"), ("guidance_scale", "guidance_scale"),
                           ("width", "width"), ("height", "height")):
        if getattr(f, name) is not None:
            kwargs[argument] = script.expr(name)
    for name, value in extra.items():
        kwargs[name] = script.expr("pipeline_kwargs", name, value=value)
    call_lines(script, decoder, kwargs, "result")  # the decoder draws from a generator of its own, seeded as the prior's
    script.line(f"{script.output('image', 'RGB')} = result.images[0]")


def _export_hinted(line: Line, script, spec, f, parts: str) -> None:
    """A ControlNet that is a decoder taking a hint (runner's _generate_hinted): the prior, then the hint decoder."""
    from diffusers.pipelines import auto_pipeline

    from ..export_generation import call_lines, generation_outputs, pretrained_call, source_key, _model_name
    from ..signatures import checkpoint_class

    item = f.controlnet[0]
    cn_source = script.source(item.model)
    wanted = line.hint_decoders[spec.task]
    key = ("hint-decoder", *source_key(cn_source), wanted)
    if key not in script.model_vars:
        loaded_class = checkpoint_class(cn_source) or line.family.controlnet_class
        variable = script.name(_model_name(script, item.model))
        location, kwargs, comment = pretrained_call(script, cn_source, "ControlNet")
        script.need(f"from diffusers import {line.family.controlnet_class}")
        script.model_line(f"{variable} = {line.family.controlnet_class}.from_pretrained("
                          f"{', '.join([location, *kwargs])}){comment}")
        script.model_line(f"{variable}.to(device)")
        script.model_vars[("hint-loaded", variable)] = variable
        if loaded_class != wanted:
            decoder_variable = script.name(f"{variable}_{spec.task}")
            script.need(f"from diffusers import {wanted}")
            script.model_line(f"{decoder_variable} = {wanted}(**{variable}.components)")
            script.model_vars[key] = (decoder_variable, variable)
        else:
            script.model_vars[key] = (variable, variable)
    decoder, loaded = script.model_vars[key]
    cls = getattr(auto_pipeline, AUTOPIPELINE_MAPPINGS["AutoPipelineForText2Image"])[line.autopipeline_key]
    combined = _export_task_pipeline(script, parts, cls.__name__)
    prior = f"{combined}.prior_pipe"
    _export_schedulers(script, f.scheduler, parts, [decoder], [prior], None, key=decoder,
                       base=f"{loaded}.scheduler")
    kwargs = {argument: script.expr(field) for field, argument in spec.arguments.items()
              if getattr(f, field, None) is not None}
    kwargs.update(spec.export_inputs(script, f))
    script.need("from PIL import Image")
    condition = script.image(item.image, "RGB")
    if condition.endswith(")"):
        script.line(f"condition = {condition}")
        condition = "condition"
    _export_fit(script, kwargs, kwargs.get("image", condition), f"{decoder}.movq")
    prior_kwargs = {name: kwargs.pop(name) for name in ("prompt", "negative_prompt", "num_images_per_prompt")
                    if name in kwargs}
    extra = dict(f.pipeline_kwargs)
    prior_kwargs.update({name: script.literal(value) for name, value in _prior_arguments(extra).items()})
    for name, value in extra.items():
        kwargs[name] = script.expr("pipeline_kwargs", name, value=value)
    script.line(f"generator = torch.Generator(\"cpu\").manual_seed({script.seed})  # {script.seed_comment()}; one "
                "generator for the prior and the decoder, as diffusers' docs do")
    script.line(f"image_embeds, negative_image_embeds = {prior}("
                + ", ".join([f"{name}={value}" for name, value in prior_kwargs.items()] + ["generator=generator"])
                + ").to_tuple()")
    kwargs.update(image_embeds="image_embeds", negative_image_embeds="negative_image_embeds",
                  hint=f"{script.function(_hint)}({condition}, (width, height), image_embeds.shape[0])")
    call_lines(script, decoder, kwargs, "result", fresh_generator=False)
    generation_outputs(script, kwargs, False, resize_to="keep_size")
