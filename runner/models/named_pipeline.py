"""The `pipeline` node: any pipeline class diffusers exports, by name, called with the node's `call` arguments.

Only names on the allow-list (pipeline classes exported at diffusers' top level, see runner.models.signatures)
are looked up, with `getattr(diffusers, name)`: a workflow cannot make runner import anything else.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..core.suggest import did_you_mean
from .calls import NodeInputError, call_defaults, recordable, report_step


def run_named_pipeline(ctx, class_name: str, model_ref: str, call: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """Call `class_name` on the model with `call` (linked images already loaded); `recorded`: the call as the workflow wrote it."""
    import torch

    pipe = load_named_pipeline(ctx, class_name, model_ref)
    parameters = inspect.signature(pipe.__call__).parameters
    kwargs = {name: _argument(value, parameters.get(name)) for name, value in call.items()}
    unknown = [name for name in kwargs if name not in parameters or parameters[name].kind is inspect.Parameter.VAR_KEYWORD]
    if unknown:  # validation checks this against diffusers' source; the installed class has the last word
        raise NodeInputError(f"call.{unknown[0]}: {class_name} takes no argument '{unknown[0]}'"
                             f"{did_you_mean(unknown[0], parameters)}")
    if "generator" in parameters:
        kwargs["generator"] = torch.Generator("cpu").manual_seed(ctx.seed)
    if "callback_on_step_end" in parameters:
        def on_step_end(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
            report_step(ctx, pipeline, step, kwargs)
            return callback_kwargs

        kwargs["callback_on_step_end"] = on_step_end
    ctx.record(checkpoint=model_ref, pipeline_class=type(pipe).__name__, call={k: recordable(v) for k, v in recorded.items()},
               call_defaults=call_defaults(pipe, kwargs),
               seeded="generator" in parameters)
    with torch.inference_mode():
        result = pipe(**kwargs)
    images = _pil_images(getattr(result, "images", None))
    if not images:
        raise NodeInputError(f"{class_name} returned no images: the pipeline node takes pipelines whose output has .images")
    return {"image": images[0], "images": images}


def load_named_pipeline(ctx, class_name: str, model_ref: str):
    """The pipeline class `class_name` on this checkpoint, loaded once per run and moved to the run's device."""
    from .signatures import pipeline_index

    index = pipeline_index()
    if index is not None and class_name not in index.allowed:
        raise NodeInputError(f"'{class_name}' is not a pipeline class diffusers exports{did_you_mean(class_name, index.allowed)}")
    source, identity = ctx.source(model_ref)
    registry = ctx.models

    def load():
        import diffusers

        cls = getattr(diffusers, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
            raise NodeInputError(f"'{class_name}' is not a diffusers pipeline class")
        if source.kind == "file":
            location, kwargs = registry.pretrained_args(source)
            if source.entry.vae:  # the entry's vae: replaces the checkpoint's own, as for the generation nodes
                kwargs["vae"] = registry.vae_override(source)
            pipe = registry.from_single_file(location, kwargs, source, cls)
            pipe.to(registry.device)
        else:
            # the checkpoint loads once per run (shared with generation nodes); other classes reuse its modules
            base = registry.base(source, identity)
            pipe = base if type(base) is cls else cls.from_pipe(base)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # a single file is loaded here (a model load); otherwise the pipeline derives from the checkpoint loaded once
    return registry.cached(("pipeline-class", class_name, identity), load, group=identity,
                           load_label=identity if source.kind == "file" else None, source=source)


def _argument(value: Any, parameter: inspect.Parameter | None) -> Any:
    """YAML lists become tuples where the pipeline wants tuples."""
    if isinstance(value, list) and parameter is not None and "tuple" in str(parameter.annotation).lower():
        return tuple(value)
    return value


def _pil_images(images: Any) -> list:
    from PIL import Image

    if images is None:
        return []
    if isinstance(images, list) and all(isinstance(image, Image.Image) for image in images):
        return images
    import numpy as np

    array = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        return []
    if array.shape[1] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):  # NCHW
        array = array.transpose(0, 2, 3, 1)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    return [Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame) for frame in array]


