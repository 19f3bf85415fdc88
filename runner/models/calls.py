"""Calling a diffusers pipeline the way every runner node does: arguments from fields, a CPU generator, progress."""

from __future__ import annotations

import inspect
import math
from typing import Any

from ..core.suggest import did_you_mean
from .errors import NodeInputError
from .estimate import check_working_memory

# call arguments runner sets itself: never from pipeline_kwargs
RESERVED_CALL_ARGUMENTS = {"generator", "callback_on_step_end", "callback_on_step_end_tensor_inputs", "output_type",
                           "return_dict", "image", "mask_image", "prior_callback_on_step_end", "callback",
                           "callback_steps"}


def common_arguments(f, arguments: dict[str, str]) -> dict[str, Any]:
    """The call arguments that node fields map to one to one (`arguments`: field -> argument; unset fields: the pipeline's defaults)."""
    kwargs: dict[str, Any] = {}
    for field, argument in arguments.items():
        value = getattr(f, field, None)
        if value is not None:
            kwargs[argument] = value
    return kwargs


def own_defaults(pipe) -> dict[str, Any]:
    """The pipeline's call defaults, from its signature (`inspect`: the installed class's own)."""
    return {name: parameter.default for name, parameter in inspect.signature(pipe.__call__).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def check_denoising_steps(kwargs: dict[str, Any], pipe=None) -> None:
    """diffusers runs int(steps * strength) steps on an input image; zero fails deep inside with a tensor error."""
    defaults = own_defaults(pipe) if pipe is not None else {}
    steps = kwargs.get("num_inference_steps", defaults.get("num_inference_steps"))
    strength = kwargs.get("strength", defaults.get("strength"))
    if steps is None or strength is None or "image" not in kwargs or "denoising_start" in kwargs:
        return
    problem = denoising_problem(steps, strength)
    if problem:
        raise NodeInputError(*problem)


def denoising_problem(steps: int, strength: float) -> tuple[str, str] | None:
    """(message, fix) when int(steps * strength) is 0: diffusers then fails (img2img deep inside with a tensor error,
    inpaint with "the number of pipeline steps is 0"); it never returns the image unchanged."""
    if int(steps * strength) >= 1:
        return None
    if strength == 0:
        return ("strength 0 asks for no change at all, and diffusers cannot run it: it runs int(steps * strength) = 0 "
                "denoising steps on an input image and fails",
                "to keep the image as it is, link the input image itself where this node's output is used (and remove "
                "the node); to change it, set strength above 0 (e.g. 0.3)")
    fewest_steps = int(1 / strength) + 1 if int(1 / strength) * strength < 1 else int(1 / strength)
    return (f"strength {strength} x steps {steps} leaves no denoising step (diffusers runs int(steps * strength) "
            "steps on an input image)",
            f"raise steps to at least {fewest_steps}, or strength to at least {math.ceil(100 / steps) / 100:g}")


def refuse_swallowed(pipe, kwargs: dict[str, Any], arguments: dict[str, str] | None = None) -> None:
    """NodeInputError for a call argument the pipeline does not name: most diffusers pipelines take `**kwargs` and
    drop what they do not know (img2img's width/height), so the call would run as if it had not been given, while
    the manifest recorded it as applied. `arguments` (node field -> argument) names the fields in the message."""
    parameters = inspect.signature(pipe.__call__).parameters
    named = {name for name, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    swallowed = [name for name in kwargs if name not in named]
    if not swallowed:
        return
    field_of = {argument: field for field, argument in (arguments or {}).items()}
    fields = [field_of.get(name, name) for name in swallowed]
    class_name = type(pipe).__name__
    raise NodeInputError(f"{class_name} takes no {', '.join(repr(n) for n in swallowed)}: diffusers would accept "
                         "it and ignore it", swallowed_fix(class_name, fields))


def swallowed_fix(class_name: str, fields: list[str]) -> str:
    """How to fix fields a pipeline does not take (width/height: resize the input instead)."""
    sizes = [field for field in fields if field in ("width", "height")]
    if sizes:
        return (f"remove {' and '.join(sizes)}: {class_name} makes an image of its input's size; to change the size, "
                "resize the input image first (load_image size: [W, H], or an upscale node)")
    return f"remove {', '.join(fields)}: {class_name} does not use {'it' if len(fields) == 1 else 'them'}"


def run_pipeline(ctx, pipe, kwargs: dict[str, Any], arguments: dict[str, str] | None = None,
                 generator=None, recorded: dict[str, Any] | None = None, batch=None) -> dict[str, Any]:
    """Call the pipeline with a CPU generator seeded from the node (or `generator`, one an earlier call of the same
    node drew from, as a prior's), report steps, return image/images/latents.
    Every argument must be one the pipeline names (see `refuse_swallowed`; `arguments`: node field -> argument).
    `recorded`: the call to record instead of `kwargs`, where they are the same call in other terms (prompts given
    as the embeddings the pipeline would compute from them). `batch` (runner.models.generate.Batch): the call computes
    several tasks, one CPU generator per image (diffusers' reproducible batches); the lead's outputs are returned."""
    import torch

    refuse_swallowed(pipe, kwargs, arguments)
    if batch is not None:
        generator = [torch.Generator("cpu").manual_seed(seed) for seed in batch.seeds]
    elif generator is None:
        generator = torch.Generator("cpu").manual_seed(ctx.seed)
    final_latents: dict[str, Any] = {}
    parameters = inspect.signature(pipe.__call__).parameters

    def on_step_end(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        if "latents" in callback_kwargs:
            final_latents["latents"] = callback_kwargs["latents"]
        report_step(ctx, pipeline, step, kwargs)
        return callback_kwargs

    def on_step(step: int, timestep, latents) -> None:  # the older callback, for pipelines that have no other
        final_latents["latents"] = latents
        report_step(ctx, pipe, step, kwargs)

    if "callback_on_step_end" in parameters:
        callbacks: dict[str, Any] = {"callback_on_step_end": on_step_end, "callback_on_step_end_tensor_inputs": ["latents"]}
    elif "callback" in parameters and "callback_steps" in parameters:
        callbacks = {"callback": on_step, "callback_steps": 1}
    else:
        callbacks = {}
    if "prior_callback_on_step_end" in inspect.signature(pipe.__call__).parameters:  # a prior runs first, unreported
        def on_prior_step(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
            if step == 0:
                ctx.phase("running the prior (prompt to image embedding)")
            return callback_kwargs

        callbacks["prior_callback_on_step_end"] = on_prior_step
    scheduler = getattr(pipe, "scheduler", None)
    ctx.record(pipeline_class=type(pipe).__name__, scheduler=type(scheduler).__name__,
               scheduler_config={k: recordable(v) for k, v in getattr(scheduler, "config", {}).items()},
               call={k: recordable(v) for k, v in (recorded or kwargs).items()},
               call_defaults=call_defaults(pipe, recorded or kwargs),
               # how the noise was drawn: torch.Generator("cpu").manual_seed(seed), passed as `generator`
               generator={"device": "cpu", "seed": ctx.seed})
    check_working_memory(ctx, pipe, kwargs)  # refuse at once what cannot fit, instead of being killed mid-allocation
    ctx.phase("encoding the prompt and the input image" if "image" in kwargs else "encoding the prompt")
    # the noise comes from `generator`; torch's global generator is seeded too, because some pipelines draw from it
    # (SD3's ControlNet samples its condition's latents without the generator): same seed, same bytes
    torch.manual_seed(batch.seeds[0] if batch is not None else ctx.seed)
    with torch.inference_mode():
        result = pipe(**kwargs, generator=generator, **callbacks)
    if kwargs.get("output_type") == "latent":  # no decode: the latents are the node's only output
        latents = final_latents.get("latents", result.images)
        outputs: dict[str, Any] = {"latents": latents.detach().clone()}
    else:
        images = list(result.images)
        outputs = {"image": images[0], "images": images}
        if "latents" in final_latents:
            outputs["latents"] = final_latents["latents"].detach().clone()
    return outputs if batch is None else batch.split(outputs)


def report_step(ctx, pipeline, step: int, kwargs: dict[str, Any]) -> None:
    """Report a finished denoising step (0-based `step`); after the last one the decode starts, which takes a while
    at full size: say so, or the progress would sit at N/N with nothing shown."""
    total = getattr(pipeline, "_num_timesteps", None) or kwargs.get("num_inference_steps")
    ctx.step(step + 1, total)
    if total and step + 1 >= total:
        decoder = next((name for name in ("vae", "movq") if getattr(pipeline, name, None) is not None), None)
        ctx.phase(f"decoding the latents ({decoder.upper() if decoder == 'vae' else 'MoVQ'})" if decoder else "finishing the call")


def call_defaults(pipe, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments the call left to the pipeline, with the values it takes for them (what really ran, with `call`)."""
    return {name: recordable(value) for name, value in own_defaults(pipe).items()
            if name not in kwargs and name not in RESERVED_CALL_ARGUMENTS}


def recordable(value: Any) -> Any:
    """A call argument as manifest data: plain values as they are, anything else by its type name."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return list(value)
    return type(value).__name__


def checked_pipeline_kwargs(pipe, extra: dict[str, Any], arguments: dict[str, str]) -> dict[str, Any]:
    """pipeline_kwargs checked against the pipeline's call signature; YAML lists become tuples where it wants tuples."""
    if not extra:
        return {}
    parameters = {name: p for name, p in inspect.signature(pipe.__call__).parameters.items() if name not in ("self", "kwargs")}
    checked = {}
    for name, value in extra.items():
        if name in RESERVED_CALL_ARGUMENTS or name in arguments.values():
            field = next((k for k, v in arguments.items() if v == name), None)
            hint = f"use the node field '{field}'" if field else "runner sets it itself"
            raise NodeInputError(f"pipeline_kwargs.{name} is not allowed: {hint}")
        if name not in parameters:
            raise NodeInputError(
                f"pipeline_kwargs.{name}: {type(pipe).__name__} takes no argument '{name}'{did_you_mean(name, parameters)}"
            )
        if isinstance(value, list) and "tuple" in str(parameters[name].annotation).lower():
            value = tuple(value)  # e.g. SDXL original_size / crops_coords_top_left / target_size
        checked[name] = value
    return checked
