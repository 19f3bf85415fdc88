"""Generation nodes: build the diffusers call from node fields, run it, collect image/images/latents."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
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
    if task == "interpolate":
        raise ModelUnavailable(f"interpolate nodes blend through the Kandinsky 2.2 prior, and model '{source.label}' is "
                               "not a Kandinsky 2.2 model: use kandinsky-community/kandinsky-2-2-decoder "
                               "(tiny:kandinsky22 offline)")
    return generate_diffusers(ctx, task, f)


def generate_diffusers(ctx, task: str, f) -> dict[str, Any]:
    """SD 1.x/2.x and SDXL families (and any checkpoint AutoPipeline knows): txt2img, img2img, inpaint,
    depth2img, refine, each optionally with ControlNets and LoRAs."""
    source, identity = ctx.source(f.model)
    registry = ctx.models
    controlnets = [ctx.source(item.model) for item in f.controlnet]
    pipe = registry.pipeline(task, source, identity, controlnets)
    pipe.scheduler = registry.fresh_scheduler(identity, f.scheduler)

    kwargs = common_arguments(f)
    if task in ("img2img", "inpaint", "depth2img"):
        kwargs["image"] = ctx.load(f.image).convert("RGB")
    if task == "inpaint":
        kwargs["mask_image"] = ctx.load(f.mask).convert("L")
        # without explicit sizes diffusers' inpaint falls back to the model's default size; keep the input's
        kwargs.setdefault("width", kwargs["image"].width)
        kwargs.setdefault("height", kwargs["image"].height)
    if task == "depth2img" and f.depth is not None:
        kwargs["depth_map"] = depth_tensor(ctx.load(f.depth))
    if task == "refine":
        if f.latents is not None:
            kwargs["image"] = ctx.load(f.latents)
            if f.denoising_start is not None:
                kwargs["denoising_start"] = f.denoising_start
        else:
            kwargs["image"] = ctx.load(f.image).convert("RGB")
    _check_denoising_steps(kwargs)
    if f.controlnet:
        kwargs.update(controlnet_arguments(ctx, task, f, kwargs))
        ctx.record(controlnets=[{"model": cn_identity, "scale": item.scale, "start": item.start, "end": item.end}
                                for (_s, cn_identity), item in zip(controlnets, f.controlnet)],
                   controlnet_class=type(pipe.controlnet).__name__)
    shared = registry.shared_components.get(identity)
    if shared:
        ctx.record(shared_components=shared)
    kwargs.update(_checked_pipeline_kwargs(pipe, f.pipeline_kwargs))
    with applied_loras(ctx, pipe, f.lora), memory_options(ctx, pipe, f):
        return run_pipeline(ctx, pipe, kwargs)


def _check_denoising_steps(kwargs: dict[str, Any]) -> None:
    """diffusers runs int(steps * strength) steps on an input image; zero fails deep inside with a tensor error."""
    steps, strength = kwargs.get("num_inference_steps"), kwargs.get("strength")
    if steps is None or strength is None or "image" not in kwargs or "denoising_start" in kwargs:
        return
    if int(steps * strength) < 1:
        raise NodeInputError(
            f"strength {strength} x steps {steps} leaves no denoising step (diffusers runs int(steps * strength) "
            f"steps on an input image): raise steps to at least {int(1 / strength) + 1 if strength else 1} or raise strength"
        )


def common_arguments(f) -> dict[str, Any]:
    """The pipeline call arguments that node fields map to one to one (unset fields: the pipeline's defaults)."""
    kwargs: dict[str, Any] = {}
    for field, argument in CALL_ARGUMENTS.items():
        value = getattr(f, field, None)
        if value is not None:
            kwargs[argument] = value
    return kwargs


def run_pipeline(ctx, pipe, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Call the pipeline with a CPU generator seeded from the node, report steps, return image/images/latents."""
    import torch

    generator = torch.Generator("cpu").manual_seed(ctx.seed)
    final_latents: dict[str, Any] = {}
    takes_callback = "callback_on_step_end" in inspect.signature(pipe.__call__).parameters

    def on_step_end(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        if "latents" in callback_kwargs:
            final_latents["latents"] = callback_kwargs["latents"]
        ctx.step(step + 1, getattr(pipeline, "_num_timesteps", None) or kwargs.get("num_inference_steps"))
        return callback_kwargs

    callbacks = {"callback_on_step_end": on_step_end, "callback_on_step_end_tensor_inputs": ["latents"]} if takes_callback else {}
    scheduler = getattr(pipe, "scheduler", None)
    ctx.record(pipeline_class=type(pipe).__name__, scheduler=type(scheduler).__name__,
               scheduler_config={k: recordable(v) for k, v in getattr(scheduler, "config", {}).items()},
               call={k: recordable(v) for k, v in kwargs.items()})
    with torch.inference_mode():
        result = pipe(**kwargs, generator=generator, **callbacks)
    images = list(result.images)
    outputs: dict[str, Any] = {"image": images[0], "images": images}
    if "latents" in final_latents:
        outputs["latents"] = final_latents["latents"].detach().clone()
    return outputs


def recordable(value: Any) -> Any:
    """A call argument as manifest data: plain values as they are, anything else by its type name."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return list(value)
    return type(value).__name__


def depth_tensor(depth_image):
    """A depth image (near = bright) as the (1, H, W) float tensor that depth2img's depth_map takes."""
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray(depth_image.convert("L"), dtype=np.float32)[None])


def inpaint_condition(image, mask):
    """The inpaint ControlNet condition, built the standard way: pixels in [0, 1], masked pixels set to -1."""
    import numpy as np
    import torch

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    masked = np.asarray(mask.convert("L").resize(image.size), dtype=np.float32) / 255.0 > 0.5
    pixels[masked] = -1.0
    return torch.from_numpy(pixels.transpose(2, 0, 1)[None].copy())


def controlnet_arguments(ctx, task: str, f, kwargs: dict[str, Any]) -> dict[str, Any]:
    conditions = []
    for item in f.controlnet:
        if item.image is not None:
            conditions.append(ctx.load(item.image).convert("RGB"))
        else:  # validated: only inpaint nodes may leave it out
            conditions.append(inpaint_condition(kwargs["image"], kwargs["mask_image"]))
    single = len(f.controlnet) == 1

    def one_or_list(values: list) -> Any:
        return values[0] if single else values

    condition_argument = "image" if task == "txt2img" else "control_image"
    return {
        condition_argument: one_or_list(conditions),
        "controlnet_conditioning_scale": one_or_list([item.scale for item in f.controlnet]),
        "control_guidance_start": one_or_list([item.start for item in f.controlnet]),
        "control_guidance_end": one_or_list([item.end for item in f.controlnet]),
    }


class memory_options:
    """Per-node memory savers on the shared pipeline for one call: attention slicing, VAE tiling, CPU offload."""

    def __init__(self, ctx, pipe, f):
        self.ctx, self.pipe = ctx, pipe
        self.slicing, self.tiling = f.attention_slicing, f.vae_tiling
        self.offload = f.offload or ctx.task.offload

    def __enter__(self):
        if self.slicing:
            self.pipe.enable_attention_slicing()
        if self.tiling:
            vae = getattr(self.pipe, "vae", None)
            if vae is None or not hasattr(vae, "enable_tiling"):
                self.ctx.warn(f"vae_tiling: {type(self.pipe).__name__} has no VAE that tiles; running without it")
                self.tiling = False
            else:
                vae.enable_tiling()
        if self.offload != "none":
            device = self.ctx.models.device
            if not device.startswith("cuda"):
                message = f"offload '{self.offload}' needs a CUDA device; running without it on {device}"
                self.ctx.warn(message)
                self.ctx.record(offload=f"ignored ({message})")
                self.offload = "none"
            else:
                index = int(device.split(":")[1]) if ":" in device else 0
                if self.offload == "model":
                    self.pipe.enable_model_cpu_offload(gpu_id=index)
                else:
                    self.pipe.enable_sequential_cpu_offload(gpu_id=index)
                self.ctx.record(offload=self.offload)
        return self

    def __exit__(self, *exc):
        # the modules are shared with other nodes' pipelines: leave them as they were
        if self.slicing:
            self.pipe.disable_attention_slicing()
        if self.tiling:
            self.pipe.vae.disable_tiling()
        if self.offload != "none":
            self.pipe.remove_all_hooks()
            self.pipe.to(self.ctx.models.device)
        return False


class applied_loras:
    """Load the node's LoRAs into the (shared) pipeline for one call, then remove them: the base is not reloaded."""

    def __init__(self, ctx, pipe, loras):
        self.ctx, self.pipe, self.loras = ctx, pipe, list(loras)

    def __enter__(self):
        if not self.loras:
            return self
        names, weights = [], []
        for index, item in enumerate(self.loras):
            source, identity = self.ctx.source(item.model)
            location, kwargs = self.ctx.models.pretrained_args(source)
            name = f"lora_{index}"
            allowed = {k: v for k, v in kwargs.items() if k in ("revision", "cache_dir", "local_files_only", "subfolder")}
            if source.kind == "file":
                location, allowed["weight_name"] = str(Path(location).parent), Path(location).name
            with warnings.catch_warnings():  # peft warns whenever a second adapter joins the first: that is the point here
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                self.pipe.load_lora_weights(location, adapter_name=name, **allowed)
            names.append(name)
            weights.append(item.scale)
        self.pipe.set_adapters(names, adapter_weights=weights)
        self.ctx.record(loras=[{"model": self.ctx.source(i.model)[1], "scale": i.scale} for i in self.loras])
        return self

    def __exit__(self, *exc):
        if self.loras:
            self.pipe.unload_lora_weights()
        return False


def _checked_pipeline_kwargs(pipe, extra: dict[str, Any]) -> dict[str, Any]:
    """pipeline_kwargs checked against the pipeline's call signature; YAML lists become tuples where it wants tuples."""
    if not extra:
        return {}
    parameters = {name: p for name, p in inspect.signature(pipe.__call__).parameters.items() if name not in ("self", "kwargs")}
    checked = {}
    for name, value in extra.items():
        if name in RESERVED_CALL_ARGUMENTS or name in CALL_ARGUMENTS.values():
            field = next((k for k, v in CALL_ARGUMENTS.items() if v == name), None)
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


__all__ = ["generate", "ModelUnavailable", "NodeInputError"]
