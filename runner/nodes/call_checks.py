"""Validation-time checks of diffusers call arguments: generation nodes' `pipeline_kwargs`, the pipeline node's `class` and `call`.

Signatures come from diffusers' source (runner.models.signatures) and a checkpoint's class from its tiny spec
or model_index.json: nothing is loaded and torch is not imported. When the class that will run cannot be known
that way (a hub model not in the local cache, a single .safetensors file, an AutoPipeline task the checkpoint
has no class for), the keys are left to the run-time check.
"""

from __future__ import annotations

from typing import Any

from ..language.errors import did_you_mean
from ..language.refs import MODEL_REF_PREFIX
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
FIELD_OF_ARGUMENT = {"depth_map": "depth", "mask_image": "mask"}

Problems = list[tuple[tuple, str, str]]


def generation_check(spec):
    """The `check` of a generation node type driven by `spec` (a GenerationSpec; None: no AutoPipeline to look up)."""

    def check(fields, context) -> Problems:
        return check_strength(fields) + check_taken_fields(spec, fields, context) + check_pipeline_kwargs(spec, fields, context)

    return check


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
    problems: Problems = []
    for field, argument in set_fields:
        if argument not in signature.parameters:
            problems.append(((field,), f"{class_name} (what this {fields.type} node runs for '{label}') takes no "
                                       f"'{argument}': diffusers would accept it and ignore it",
                             swallowed_fix(class_name, [field])))
    return problems


def check_strength(fields) -> Problems:
    """strength 0 on an input image: diffusers runs int(steps * strength) = 0 denoising steps and fails, whatever the
    steps (other products below one step depend on the pipeline's default steps: checked when the node runs)."""
    from ..models.calls import denoising_problem

    if getattr(fields, "strength", None) != 0 or getattr(fields, "denoising_start", None) is not None:
        return []
    return [(("strength",), *denoising_problem(1, 0.0))]


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
    """(class name, signature, model label) of the pipeline a generation node will call, or None when unknown here."""
    from ..models.signatures import checkpoint_class, pipeline_index

    source = _source(fields.model, context)
    if source is None:
        return None
    checkpoint = checkpoint_class(source)
    index = pipeline_index() if checkpoint is not None else None
    if index is None:
        return None
    class_name = index.task_class(checkpoint, spec.autopipeline, controlnet=bool(getattr(fields, "controlnet", None)))
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
