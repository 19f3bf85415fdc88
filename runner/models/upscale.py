"""Diffusion upscalers (Stable Diffusion x4 and other image-conditioned upscaling pipelines)."""

from __future__ import annotations

import inspect

from .calls import run_pipeline
from .sources import ModelUnavailable


def diffusion_upscale(ctx, f, image):
    source, identity = ctx.source(f.model)
    pipe = ctx.models.base(source, identity)
    parameters = inspect.signature(pipe.__call__).parameters
    if "image" not in parameters:
        raise ModelUnavailable(
            f"model '{source.label}' ({type(pipe).__name__}) is not an image upscaler: "
            "use e.g. stabilityai/stable-diffusion-x4-upscaler (tiny:sd-x4-upscaler offline)"
        )
    kwargs = {"image": image}
    if "prompt" in parameters:
        kwargs["prompt"] = f.prompt
    if f.steps is not None:
        kwargs["num_inference_steps"] = f.steps
    if f.noise_level is not None:
        kwargs["noise_level"] = f.noise_level
    return run_pipeline(ctx, pipe, kwargs)["image"]
