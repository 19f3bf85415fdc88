"""Validation-time checks of diffusers call arguments: generation nodes' `pipeline_kwargs`, the pipeline node's `class` and `call`.

Signatures come from diffusers' source (runner.models.signatures) and a checkpoint's class from its tiny spec
or model_index.json: nothing is loaded and torch is not imported. When the class that will run cannot be known
that way (a hub model not in the local cache, a single .safetensors file, an AutoPipeline task the checkpoint
has no class for), the keys are left to the run-time check.
"""

from __future__ import annotations

import re

from typing import Any

from ..core.limits import LIMITS, env_limit
from ..language.errors import did_you_mean
from ..language.refs import MODEL_REF_PREFIX
from ..models.prompt_weights import weighting_problems
from .arguments import CALL_ARGUMENTS, CONTROLNET_ITEM_ARGUMENTS

# Arguments of a `pipeline` node's call that runner supplies itself.
PIPELINE_NODE_ARGUMENTS = {
    "generator": "runner passes a generator seeded from the node's 'seed'",
    "output_type": "the node returns PIL images",
    "return_dict": "the node reads the images from the pipeline's output",
    "callback_on_step_end": "runner uses it to report progress",
    "callback_on_step_end_tensor_inputs": "runner uses it to report progress",
}
# Arguments a generation node sets from its ControlNet items.
CONTROLNET_ARGUMENTS = {**{argument: field for field, argument in CONTROLNET_ITEM_ARGUMENTS.items()}, "control_image": "image"}
# Call arguments named differently from the node field that sets them (besides generate.CALL_ARGUMENTS).
FIELD_OF_ARGUMENT = {"depth_map": "depth", "mask_image": "mask", "ip_adapter_image": "ip_adapter",
                     "ip_adapter_image_embeds": "ip_adapter"}

Problems = list[tuple[tuple, str, str]]


def generation_check(spec, *, arguments: bool = True):
    """The `check` of a generation node type driven by `spec` (a GenerationSpec): what the checkpoint's model family
    cannot do, then (with `arguments`) the fields and pipeline_kwargs its pipeline would not take."""

    def check(fields, context) -> Problems:
        problems = check_strength(fields) + check_pixels(fields) + check_family(spec, fields, context)
        if arguments:
            problems += check_taken_fields(spec, fields, context) + check_pipeline_kwargs(spec, fields, context)
        return problems

    return check


def check_family(spec, fields, context) -> Problems:
    """What the checkpoint's model family (known from its files: tiny models, folders, cached hub snapshots) cannot
    do: the node's task, ControlNets, LoRAs. Where the family is known only once loaded, the run checks the same."""
    from ..models import families

    source = _source(fields.model, context)
    family = families.from_files(source) if source is not None else None
    if family is None:
        return []
    task = family.task(spec.task)
    if task is None:
        doers = families.for_task(spec.task)
        examples = "; ".join(f"{other.name}: {other.task(spec.task).example or other.example('checkpoint')}"
                             for other in doers if other.task(spec.task).example or other.example("checkpoint"))
        return [(("model",), f"model '{source.label}' is {_a(family.name)} model, which {_a(fields.type)} node cannot use: "
                             f"it runs on {families.either(other.name for other in doers)} models",
                 f"use {_a(families.either(other.name for other in doers))} checkpoint here"
                 + (f" ({examples})" if examples else ""))]
    problems: Problems = []
    from ..models.configs import component_config
    from ..models.families.checks import channel_problem, controlnet_problem, runtime_option_problems
    from ..models.model_kinds import class_kind

    denoiser = component_config(source, "unet") or component_config(source, "transformer") or {}
    channels = denoiser.get("in_channels")
    problem = channel_problem(family, spec.task, channels, source.label, f"{_a(fields.type)} node") \
        if isinstance(channels, int) else None
    if problem is not None:
        problems.append((("model",), *problem))
    items = getattr(fields, "controlnet", None) or []
    takes_controlnets = task.controlnet and family.controlnet_class
    if takes_controlnets and family.controlnet_most is not None and len(items) > family.controlnet_most:
        problems.append((("controlnet",), f"{family.name} takes at most {family.controlnet_most} ControlNet on a node, "
                                          f"not {len(items)}", f"keep {family.controlnet_most} of the items"))
    for index, item in enumerate(items if takes_controlnets and not family.controlnet_settings else []):
        for name in spec.controlnet_arguments:
            if getattr(item, name, None) is not None:
                problems.append((("controlnet", index, name), f"{family.name}'s ControlNets take no '{name}': the "
                                 "condition always acts in full", f"remove '{name}'"))
    for index, item in enumerate(items):
        cn_source = _source(item.model, context)
        config = component_config(cn_source) if cn_source is not None else None
        if not config or class_kind(config.get("_class_name")) != "controlnet":
            continue  # unknown here, or not a ControlNet at all (refused at its entry as the wrong kind)
        problem = controlnet_problem(family, source.label, cn_source.label, config)
        if problem is not None and task.controlnet and family.controlnet_class:
            problems.append((("controlnet", index, "model"), *problem))
    problems += _family_fields(family, source, fields, context, denoiser)
    if getattr(fields, "controlnet", None) and not (task.controlnet and family.controlnet_class):
        problems.append((("controlnet",), f"ControlNet is not supported for {family.name} (model '{source.label}') on "
                                          f"{_a(fields.type)} node in this version of runner",
                         "remove 'controlnet', or use a checkpoint of a family that takes ControlNets ("
                         + ", ".join(other.name for other in families.FAMILIES if other.controlnet_class) + ")"))
    if getattr(fields, "adapter", None) and not family.adapter_pipeline:
        problems.append((("adapter",), f"T2I-Adapters are not supported for {family.name} (model '{source.label}') in "
                                       "this version of runner",
                         "remove adapter, or use a checkpoint of a family that takes them ("
                         + ", ".join(other.name for other in families.FAMILIES if other.adapter_pipeline) + ")"))
    elif getattr(fields, "adapter_conditioning_factor", None) is not None and not family.adapter_factor:
        problems.append((("adapter_conditioning_factor",), f"{family.name}'s adapter pipeline "
                                                           f"({family.adapter_pipeline}) takes no "
                                                           "adapter_conditioning_factor: its adapters act in every step",
                         "remove adapter_conditioning_factor (SDXL's adapter pipeline takes it)"))
    for index, item in enumerate(getattr(fields, "ip_adapter", None) or [] if family.ip_adapter else []):
        if family.ip_adapter_blocks:
            break
        if isinstance(item.scale, dict):
            problems.append((("ip_adapter", index, "scale"), f"{family.name}'s IP-Adapters take one scale (a number), "
                                                             "not a per-block dict", "give scale a number, e.g. 0.7"))
        if item.mask is not None:
            problems.append((("ip_adapter", index, "mask"), f"{family.name}'s IP-Adapters take no mask in diffusers",
                             "remove mask (SD and SDXL IP-Adapters take one)"))
    if getattr(fields, "ip_adapter", None) and not family.ip_adapter:
        problems.append((("ip_adapter",), f"IP-Adapters are not supported for {family.name} (model '{source.label}') "
                                          "in this version of runner",
                         "remove ip_adapter, or use a checkpoint of a family that takes them ("
                         + ", ".join(other.name for other in families.FAMILIES if other.ip_adapter) + ")"))
    if source.entry.embeddings and not family.embeddings:
        problems.append((("model",), f"model '{source.label}' loads textual-inversion embeddings, and {family.name} "
                                     "takes none in diffusers",
                         "remove embeddings: from its model entry ("
                         + ", ".join(other.name for other in families.FAMILIES if other.embeddings) + " take them)"))
    problems += _embedding_references(source, fields)
    problems += weighting_problems(family, source.label, fields, context.prompt_syntax)
    if getattr(fields, "freeu", None) is not None and not family.freeu:
        problems.append((("freeu",), f"FreeU is a UNet's, and {family.name} (model '{source.label}') has none that "
                                     "diffusers applies it to", "remove freeu (SD 1.x/2.x and SDXL take it)"))
    if getattr(fields, "lora", None) and not family.lora:
        problems.append((("lora",), f"LoRA is not supported for {family.name} (model '{source.label}') in this version "
                                    "of runner",
                         "remove 'lora', or use a checkpoint of a family that loads LoRAs ("
                         + ", ".join(other.name for other in families.FAMILIES if other.lora) + ")"))
    problems += runtime_option_problems(family, source.label, fields)
    return problems


EMBEDDING_REFERENCE = re.compile(r"embedding:[\w.\-]+")


def _embedding_references(source, fields) -> Problems:
    """`embedding:NAME` in a prompt (ComfyUI's way to use a textual inversion) is only a token the model's entry
    loads: one it does not name would reach the text encoder as plain text."""
    problems: Problems = []
    for name in ("prompt", "negative_prompt"):
        text = getattr(fields, name, None) or ""
        for reference in dict.fromkeys(EMBEDDING_REFERENCE.findall(text)):
            if reference not in source.entry.embeddings:
                file = reference.split(":", 1)[1]
                problems.append(((name,), f"'{reference}' names a textual-inversion embedding that model "
                                          f"'{source.label}' does not load",
                                 f"add it to the model's entry: embeddings: {{'{reference}': "
                                 f"{file if file.endswith('.safetensors') else file + '.safetensors'}}} (a file in the "
                                 "workflow's folder or in a model folder's embeddings/)"))
    return problems


def _family_fields(family, source, fields, context, denoiser: dict) -> Problems:
    """Fields whose values the family gives a meaning to: scheduler names, image sides, LoRAs, latents."""
    from ..models import families
    from ..models.configs import lora_facts
    from ..models.families.checks import lora_problem

    problems: Problems = []
    name = getattr(fields, "scheduler", None)
    if name and family.schedulers is not None and name not in family.schedulers:
        problems.append((("scheduler",), f"scheduler '{name}' is not one {family.name} runs with",
                         f"use one of: {', '.join(family.schedulers)}; or leave scheduler out (the checkpoint's own)"))
    step = family.size_multiple
    for side in ("width", "height"):
        value = getattr(fields, side, None)
        if isinstance(value, int) and value % step:
            problems.append(((side,), f"{side} {value}: {family.name} makes images in steps of {step} pixels",
                             f"use a multiple of {step}, e.g. {max(step, round(value / step) * step)}"))
    for index, item in enumerate(getattr(fields, "lora", None) or []):
        lora = _source(item.model, context)
        facts = lora_facts(lora) if lora is not None else None
        known = facts is not None and facts.get("denoiser") is not None  # else unknown, or no LoRA (its entry says so)
        problem = lora_problem(family, source.label, lora.label, facts, denoiser) if known and family.lora else None
        if problem is not None:
            problems.append((("lora", index, "model"), *problem))
    link = getattr(fields, "latents", None)
    upstream = context.nodes.get(link.node) if link is not None else None
    if upstream is not None and getattr(upstream, "model", None):
        origin = _source(upstream.model, context)
        made_by = families.from_files(origin) if origin is not None else None
        if not family.latents:
            problems.append((("latents",), f"{family.name} (model '{source.label}') takes an image here, not latents",
                             f"give 'image' instead of 'latents' (e.g. image: ${link.node})"))
        elif made_by is not None and made_by is not family:
            problems.append((("latents",), f"the latents of '{link.node}' are {made_by.name} latents, which "
                                           f"'{source.label}' ({family.name}) cannot read: each family encodes images "
                                           "in its own latent space",
                             f"give 'image' instead of 'latents' (e.g. image: ${link.node}): the image is decoded and "
                             "encoded again"))
    return problems


def _a(name: str) -> str:
    """The word with its article: an SDXL model, an img2img node, a Kandinsky 2.2 model."""
    return ("an " if name[:1].lower() in "aeiou" or name.startswith("SD") else "a ") + name


def check_taken_fields(spec, fields, context) -> Problems:
    """Each field set on the node must be an argument the pipeline that will run names: most diffusers pipelines take
    `**kwargs` and drop what they do not know (img2img ignores width/height), so the node would run as if the field
    were not there. Checked where the class is known here (see `_task_pipeline`); the run checks the rest."""
    from ..models.calls import swallowed_fix

    if spec is None:
        return []
    set_fields = [(field, argument) for field, argument in spec.arguments.items()
                  if field in type(fields).model_fields and getattr(fields, field) is not None
                  and field in fields.model_fields_set]
    if not set_fields:
        return []
    target = _task_pipeline(spec, fields, context)
    if target is None:
        return []
    class_name, signature, label = target
    if signature is None:  # the node asks for PAG, and diffusers has no PAG pipeline for this one
        return [(("pag_scale",), f"diffusers has no Perturbed-Attention Guidance pipeline for {class_name} (what this "
                                 f"{fields.type} node runs for '{label}')",
                 "remove pag_scale" + (" (or the ControlNet: some tasks have PAG only without one)"
                                       if getattr(fields, "controlnet", None) else ""))]
    problems: Problems = []
    for field, argument in set_fields:
        if argument not in signature.parameters:
            problems.append(((field,), f"{class_name} (what this {fields.type} node runs for '{label}') takes no "
                                       f"'{argument}': diffusers would accept it and ignore it",
                             swallowed_fix(class_name, [field])))
    return problems


# the pixels one generation call may make, all images of the batch together (RUNNER_MAX_GENERATION_PIXELS overrides):
# activations grow with them, and 8192 x 8192 or 64 x 1024 x 1024 exhaust a shared machine long before they finish
MAX_GENERATION_PIXELS = LIMITS["RUNNER_MAX_GENERATION_PIXELS"][0]
GENERATION_PIXELS_VARIABLE = "RUNNER_MAX_GENERATION_PIXELS"


def generation_pixel_budget() -> int:
    """The budget: RUNNER_MAX_GENERATION_PIXELS, read at each check (runner.core.limits)."""
    return env_limit(GENERATION_PIXELS_VARIABLE, MAX_GENERATION_PIXELS)


def check_pixels(fields) -> Problems:
    """width x height x num_images against the generation pixel budget, when the node writes its size."""
    budget = generation_pixel_budget()
    width, height = getattr(fields, "width", None), getattr(fields, "height", None)
    if not isinstance(width, int) or not isinstance(height, int):
        return []
    count = getattr(fields, "num_images", 1) or 1
    pixels = width * height * count
    if pixels <= budget:
        return []
    batch = f" x {count} images" if count > 1 else ""
    return [(("num_images",) if count > 1 else ("width",),
             f"{width} x {height}{batch} is {pixels / 2 ** 20:.0f} MP in one call, more than the budget of "
             + (f"{budget / 2 ** 20:.0f} MP" if budget >= 2**20 else f"{budget:,} pixels")
             + f" ({GENERATION_PIXELS_VARIABLE})",
             "make fewer or smaller images (upscale afterwards, or sweep seeds instead of a big batch), or raise "
             "RUNNER_MAX_GENERATION_PIXELS where the machine has the memory")]


def planned_call(fields):
    """What a generation node's call will make, for the memory estimate at planning (models.estimate.PlannedCall), or
    None: not a generation node, or a size known only from an input image when the call runs."""
    from ..models.estimate import PlannedCall

    spec = getattr(fields, "spec", None)
    model = getattr(fields, "model", None)
    if spec is None or not isinstance(model, str) or "width" not in type(fields).model_fields:
        return None
    width, height = getattr(fields, "width", None), getattr(fields, "height", None)
    if not (isinstance(width, int) or width is None) or not (isinstance(height, int) or height is None):
        return None
    if (width is None or height is None) and spec.size_from_image:
        return None
    count = getattr(fields, "num_images", 1)
    count = count if isinstance(count, int) and count >= 1 else 1
    at = ("num_images",) if count > 1 else ("width",) if width is not None else ("height",) if height is not None \
        else ("model",)
    return PlannedCall(count, width, height, getattr(fields, "vae_tiling", False) is True, model, at)


def check_strength(fields) -> Problems:
    """diffusers runs int(steps * strength) denoising steps on an input image and fails at 0: strength 0 whatever the
    steps, and any product below one when both are written (values and params are known here; with the steps left
    to the pipeline's default it is checked when the node runs)."""
    from ..models.calls import denoising_problem

    strength = getattr(fields, "strength", None)
    if strength is None or getattr(fields, "denoising_start", None) is not None:
        return []
    if strength == 0:
        return [(("strength",), *denoising_problem(1, 0.0))]
    steps = getattr(fields, "steps", None)
    problem = denoising_problem(steps, strength) if steps is not None else None
    return [(("strength",), *problem)] if problem else []


def check_pipeline_kwargs(spec, fields, context) -> Problems:
    extra: dict[str, Any] = fields.pipeline_kwargs
    if not extra:
        return []
    from ..models.calls import RESERVED_CALL_ARGUMENTS

    task = fields.type

    node_fields = {info.alias or name for name, info in type(fields).model_fields.items()} - {"pipeline_kwargs"}
    field_of = {**FIELD_OF_ARGUMENT, **{argument: field for field, argument in CALL_ARGUMENTS.items()}}
    problems: Problems = []
    to_check = []
    for name in extra:
        path = ("pipeline_kwargs", name)
        field = field_of.get(name, name)
        if field in node_fields:
            problems.append((path, f"'{name}' is not allowed in pipeline_kwargs: runner sets it from a node field",
                             f"use the node field '{field}'"))
        elif name in RESERVED_CALL_ARGUMENTS or name in field_of:
            problems.append((path, f"'{name}' is not allowed in pipeline_kwargs: runner sets it itself",
                             f"a {task} node has no field for it; remove it"))
        elif getattr(fields, "controlnet", None) and name in CONTROLNET_ARGUMENTS:
            problems.append((path, f"'{name}' is not allowed in pipeline_kwargs: runner sets it from the controlnet items",
                             f"set '{CONTROLNET_ARGUMENTS[name]}' on each controlnet item"))
        else:
            to_check.append(name)
    if not to_check:
        return problems
    target = _task_pipeline(spec, fields, context) if spec is not None else None
    if target is None:
        return problems
    class_name, signature, label = target
    settable = [p for p in signature.parameters if p not in field_of and p not in RESERVED_CALL_ARGUMENTS
                and p not in CONTROLNET_ARGUMENTS and p not in node_fields]
    for name in to_check:
        if name not in signature.parameters:
            problems.append((("pipeline_kwargs", name),
                             f"{class_name} takes no argument '{name}'{did_you_mean(name, settable)}",
                             f"{class_name} is the pipeline a {task} node runs for '{label}'; "
                             f"pipeline_kwargs may set: {', '.join(settable)}"))
    return problems


def check_pipeline_node(fields, context) -> Problems:
    from ..models.signatures import pipeline_index

    index = pipeline_index()
    if index is None:  # no diffusers here: the run says so
        return []
    name = fields.class_
    if name not in index.allowed:
        examples = ", ".join(n for n in ("StableDiffusionUpscalePipeline", "StableDiffusionXLImg2ImgPipeline")
                             if n in index.allowed)
        return [(("class",), f"unknown diffusers pipeline class '{name}'{did_you_mean(name, index.allowed)}",
                 f"name a pipeline class that diffusers {index.version} exports ({len(index.allowed)} of them)"
                 + (f", e.g. {examples}" if examples else ""))]
    signature = index.signature(name)
    settable = [p for p in signature.parameters if p not in PIPELINE_NODE_ARGUMENTS]
    problems: Problems = []
    for key in fields.call:
        path = ("call", key)
        if key in PIPELINE_NODE_ARGUMENTS:
            problems.append((path, f"'{key}' is not allowed in call: {PIPELINE_NODE_ARGUMENTS[key]}", "remove it"))
        elif key not in signature.parameters:
            problems.append((path, f"{name} takes no argument '{key}'{did_you_mean(key, settable)}",
                             f"call may set: {', '.join(settable)}"))
    return problems


def _task_pipeline(spec, fields, context):
    """(class name, signature, model label) of the pipeline a generation node will call, or None when unknown here:
    the checkpoint's model family (from its files) says how it does the node's task."""
    from ..models import families
    from ..models.signatures import checkpoint_class, pipeline_index

    source = _source(fields.model, context)
    if source is None:
        return None
    checkpoint = checkpoint_class(source)
    family = families.of_class(checkpoint)
    task = family.task(spec.task) if family is not None else None
    index = pipeline_index() if task is not None else None
    if index is None:
        return None
    controlnet = bool(getattr(fields, "controlnet", None))
    class_name = index.task_class(checkpoint, task.autopipeline, controlnet=controlnet,
                                  pag=getattr(fields, "pag_scale", None) is not None)
    if class_name is None and getattr(fields, "pag_scale", None) is not None:
        plain = index.task_class(checkpoint, task.autopipeline, controlnet=controlnet)
        if plain is not None:
            return plain, None, source.label  # no PAG pipeline for it: check_taken_fields says so
    signature = index.signature(class_name) if class_name is not None else None
    if signature is None:
        return None
    return class_name, signature, source.label


def _source(ref: str, context):
    from ..language.fields import resolve_entry
    from ..models.sources import ModelUnavailable, classify

    if ref.startswith(MODEL_REF_PREFIX) and ref[len(MODEL_REF_PREFIX):] not in context.models:
        return None  # reported as an unknown model already
    try:
        return classify(resolve_entry(ref, context.models), context.base_dir, context.model_roots)
    except (ModelUnavailable, ValueError):
        return None
