"""Generation nodes: build the diffusers call from node fields, run it, collect image/images/latents."""

from __future__ import annotations

import inspect
from typing import Any

from ..language.errors import did_you_mean
from .sources import ModelUnavailable

# node field -> pipeline call argument
CALL_ARGUMENTS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "steps": "num_inference_steps",
    "guidance_scale": "guidance_scale",
    "width": "width",
    "height": "height",
    "num_images": "num_images_per_prompt",
    "strength": "strength",
}
RESERVED_CALL_ARGUMENTS = {"generator", "callback_on_step_end", "callback_on_step_end_tensor_inputs", "output_type",
                           "return_dict", "image", "mask_image"}


class NodeInputError(ValueError):
    """The node's inputs cannot be used as given; the message says why and how to fix it."""


def model_family(registry, source) -> str:
    """'kandinsky22' for Kandinsky 2.2 checkpoints (prior + decoder), else 'diffusers' (SD, SD2, SDXL, ...)."""
    folder = registry.model_folder(source)
    if folder is not None and folder.is_dir():
        if (folder / "prior").is_dir() and (folder / "decoder").is_dir():
            return "kandinsky22"
        index = folder / "model_index.json"
        if index.is_file() and '"KandinskyV22' in index.read_text():
            return "kandinsky22"
    elif "kandinsky-2-2" in source.location:
        return "kandinsky22"
    return "diffusers"


def generate(ctx, task: str, f) -> dict[str, Any]:
    source, _identity = ctx.source(f.model)
    if model_family(ctx.models, source) == "kandinsky22":
        from .kandinsky import generate_kandinsky

        return generate_kandinsky(ctx, task, f)
    return generate_diffusers(ctx, task, f)


def generate_diffusers(ctx, task: str, f) -> dict[str, Any]:
    if task not in ("txt2img", "img2img", "inpaint"):
        raise NotImplementedError(f"{task} nodes do not execute yet in this version of runner")
    if f.controlnet:
        raise NotImplementedError("controlnet does not execute yet in this version of runner")
    if f.lora:
        raise NotImplementedError("lora does not execute yet in this version of runner")
    source, identity = ctx.source(f.model)
    registry = ctx.models
    pipe = registry.pipeline(task, source, identity)
    pipe.scheduler = registry.fresh_scheduler(pipe, identity, f.scheduler)

    kwargs: dict[str, Any] = {}
    for field, argument in CALL_ARGUMENTS.items():
        value = getattr(f, field, None)
        if value is not None:
            kwargs[argument] = value
    if task in ("img2img", "inpaint"):
        kwargs["image"] = ctx.load(f.image).convert("RGB")
    if task == "inpaint":
        kwargs["mask_image"] = ctx.load(f.mask).convert("L")
        # without explicit sizes diffusers' inpaint falls back to the model's default size; keep the input's
        kwargs.setdefault("width", kwargs["image"].width)
        kwargs.setdefault("height", kwargs["image"].height)
    kwargs.update(_checked_pipeline_kwargs(pipe, f.pipeline_kwargs))

    import torch

    generator = torch.Generator("cpu").manual_seed(ctx.seed)
    final_latents: dict[str, Any] = {}

    def on_step_end(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        final_latents["latents"] = callback_kwargs["latents"]
        ctx.step(step + 1, getattr(pipeline, "_num_timesteps", None) or kwargs.get("num_inference_steps"))
        return callback_kwargs

    call_record = {k: (v if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__) for k, v in kwargs.items()}
    ctx.record(pipeline_class=type(pipe).__name__, scheduler=type(pipe.scheduler).__name__, call=call_record)
    with torch.inference_mode():
        result = pipe(**kwargs, generator=generator, callback_on_step_end=on_step_end,
                      callback_on_step_end_tensor_inputs=["latents"])
    images = list(result.images)
    outputs: dict[str, Any] = {"image": images[0], "images": images}
    if "latents" in final_latents:
        outputs["latents"] = final_latents["latents"].detach().clone()
    return outputs


def _checked_pipeline_kwargs(pipe, extra: dict[str, Any]) -> dict[str, Any]:
    if not extra:
        return {}
    parameters = set(inspect.signature(pipe.__call__).parameters) - {"self", "kwargs"}
    for name in extra:
        if name in RESERVED_CALL_ARGUMENTS or name in CALL_ARGUMENTS.values():
            field = next((k for k, v in CALL_ARGUMENTS.items() if v == name), None)
            hint = f"use the node field '{field}'" if field else "runner sets it itself"
            raise NodeInputError(f"pipeline_kwargs.{name} is not allowed: {hint}")
        if name not in parameters:
            raise NodeInputError(
                f"pipeline_kwargs.{name}: {type(pipe).__name__} takes no argument '{name}'{did_you_mean(name, parameters)}"
            )
    return dict(extra)


__all__ = ["generate", "ModelUnavailable", "NodeInputError"]
