"""What a pipeline call will need beyond its weights, estimated before the call, checked against the memory budget.

The largest working memory of a Stable Diffusion-style call is the VAE decode at full resolution: diffusers decodes
the whole batch at once, and the decoder's last blocks hold tensors of the first two `block_out_channels` at the
output size (the upsampled input of the last block, its GroupNorm output, the conv and shortcut outputs). The
estimate is

    images x height x width x bytes per value x 2 x (channels[0] + channels[1])

(with `vae_tiling`, one tile instead of the whole image), plus the latents (latent_channels x height/s x width/s,
s the VAE's scale factor, three float32 copies) and the float output images. Measured on the tiny SD 1.5 model on
CPU: 236-277 bytes a pixel of peak RSS against 208 estimated. It is an estimate: it exists to refuse at once what
cannot fit (64 images of 8192 x 8192 px would need terabytes), instead of being killed by the kernel after minutes of
allocation; calls well inside the budget are never refused.

It is made twice: when a run is planned, from the node's fields and the model's configs on disk (`planned_work`:
the Session refuses the workflow at the field, before anything loads), and before the call, from the loaded pipeline
(`check_working_memory`: what the plan could not know, e.g. a size taken from an input image).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NodeInputError
from .pool import DTYPE_BYTES, format_size


class MemoryEstimateExceeded(NodeInputError):
    """A call whose working memory cannot fit the memory budget, whatever else is released."""


def call_size(pipe, kwargs: dict[str, Any]) -> tuple[int, int, int]:
    """(images, height, width) the call will produce, as diffusers decides them when fields are left out."""
    images = int(kwargs.get("num_images_per_prompt") or 1)
    prompt = kwargs.get("prompt")
    if isinstance(prompt, list):
        images *= max(1, len(prompt))
    height, width = kwargs.get("height"), kwargs.get("width")
    if height is None or width is None:
        start = kwargs.get("image")
        if isinstance(start, list) and start:
            start = start[0]
        shape = getattr(start, "shape", None)  # latents (a tensor: its `size` is a method) hand over their size
        if shape is not None and len(shape) == 4:
            scale = getattr(pipe, "vae_scale_factor", 8) or 8
            size = (int(shape[-1]) * scale, int(shape[-2]) * scale)
            images = max(images, int(shape[0]))
        else:
            size = getattr(start, "size", None)
        if size is not None:
            width, height = width or size[0], height or size[1]
        else:
            unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
            sample = getattr(getattr(unet, "config", None), "sample_size", None)
            scale = getattr(pipe, "vae_scale_factor", 8) or 8
            if isinstance(sample, (list, tuple)):
                sample = max(sample)
            default = int(sample) * int(scale) if isinstance(sample, int) else 512
            height, width = height or default, width or default
    return images, int(height), int(width)


def working_bytes(pipe, kwargs: dict[str, Any], *, tiled: bool = False) -> tuple[int, str]:
    """(bytes, how they were counted) for the call's working memory besides the weights."""
    images, height, width = call_size(pipe, kwargs)
    vae = getattr(pipe, "vae", None) or getattr(pipe, "movq", None)
    config = getattr(vae, "config", None)
    tile = int(getattr(vae, "tile_sample_min_size", 0) or getattr(config, "sample_size", 512) or 512)
    return work_bytes(images, height, width, {
        "block_out_channels": list(getattr(config, "block_out_channels", None) or [128, 256]),
        "latent_channels": getattr(config, "latent_channels", None) or 4},
        str(getattr(vae, "dtype", "torch.float32")).replace("torch.", ""),
        scale=getattr(pipe, "vae_scale_factor", 8) or 8, tile=tile if tiled and config is not None else None)


def work_bytes(images: int, height: int, width: int, vae: dict | None, dtype: str, *, scale: int | None = None,
               tile: int | None = None) -> tuple[int, str]:
    """(bytes, how they were counted) of a call making `images` of `width` x `height` px with a VAE of this config
    (block_out_channels, latent_channels: SD's when unknown), decoding in tiles of `tile` px when given."""
    vae = vae or {}
    channels = list(vae.get("block_out_channels") or [128, 256])
    top = channels[0] + (channels[1] if len(channels) > 1 else channels[0])
    scale = scale or (2 ** (len(channels) - 1) if vae.get("block_out_channels") else 8)
    latent_channels = int(vae.get("latent_channels") or 4)
    width_bytes = DTYPE_BYTES.get(dtype, 4)
    decode_pixels = height * width if tile is None else min(height * width, tile * tile)
    decode = images * decode_pixels * width_bytes * 2 * top
    # latents, noise and the scheduler's copy (float32)
    latents = images * latent_channels * (height // scale) * (width // scale) * 4 * 3
    output = images * height * width * 3 * (4 + 1)  # the decoded float array and the 8-bit images
    total = decode + latents + output
    how = (f"{images} image{'s' if images != 1 else ''} of {width} x {height} px: the VAE decode about "
           f"{format_size(decode)}{' (tiled)' if tile is not None else ''}, latents and output images "
           f"{format_size(latents + output)}")
    return total, how


@dataclass(frozen=True)
class PlannedCall:
    """What a generation node's call will make, known from its fields at planning: `images` of `width` x `height` px
    (None: the checkpoint's default size), decoded in tiles or not; `model` is the checkpoint's reference as written
    and `at` the field a refusal points at."""

    images: int
    width: int | None
    height: int | None
    tiled: bool
    model: str
    at: tuple


def planned_work(call: PlannedCall, source, models_dir: Path, dtype: str) -> tuple[int, str]:
    """`working_bytes` of a call before anything loads: the VAE (or MoVQ) and denoiser configs read from the model's
    files on disk (a tiny model's from its spec, unbuilt), SD's where they are not on this machine."""
    vae = component_config(source, models_dir, ("vae", "movq"))
    width, height = call.width, call.height
    if width is None or height is None:
        denoiser = component_config(source, models_dir, ("unet", "transformer")) or {}
        sample = denoiser.get("sample_size")
        if isinstance(sample, (list, tuple)):
            sample = max(sample)
        channels = (vae or {}).get("block_out_channels")
        scale = 2 ** (len(channels) - 1) if channels else 8
        default = int(sample) * scale if isinstance(sample, int) else 512
        width, height = width or default, height or default
    tile = int((vae or {}).get("sample_size") or 512) if call.tiled else None
    return work_bytes(call.images, height, width, vae, dtype, tile=tile)


def component_config(source, models_dir: Path, names: tuple[str, ...]) -> dict | None:
    """The config.json of the first of `names` among a model's components, without loading or building anything."""
    from .sources import local_folder

    if source.kind == "tiny":
        from .tiny import tiny_config

        for name in names:
            config = tiny_config(source.location, name)
            if config is not None:
                return config
        return None
    folder = local_folder(source, models_dir)
    if folder is None or not folder.is_dir():
        return None
    if source.entry.subfolder:
        folder = folder / source.entry.subfolder
    for name in names:
        try:
            config = json.loads((folder / name / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict):
            return config
    return None


def check_working_memory(ctx, pipe, kwargs: dict[str, Any], *, tiled: bool | None = None) -> None:
    """Refuse (MemoryEstimateExceeded, before anything is allocated) a call that cannot fit the device's memory budget
    next to the node's own models; otherwise release other models (least recently used first) to make room."""
    registry = ctx.models
    pool = getattr(registry, "pool", None)
    if pool is None:
        return
    memory = "vram" if str(registry.device).startswith("cuda") else "ram"
    budget = pool.budget(memory)
    if budget is None:
        return
    if tiled is None:
        tiled = bool(getattr(getattr(pipe, "vae", None), "use_tiling", False))  # set by vae.enable_tiling()
    need, how = working_bytes(pipe, kwargs, tiled=tiled)
    own = sum(pool.residents[key].size for key in registry.in_use if key in pool.residents
              and pool.residents[key].memory == memory)
    if need + own > budget:
        fixes = ["fewer or smaller images (num_images, width, height)"]
        if not tiled and getattr(pipe, "vae", None) is not None and hasattr(pipe.vae, "enable_tiling"):
            fixes.append("vae_tiling: true")
        fixes.append(f"a larger budget (--max-{memory}; Session(max_{memory}=...))")
        raise MemoryEstimateExceeded(
            f"this call needs about {format_size(need)} of {memory.upper()} for its work ({how}) besides "
            f"{format_size(own)} of models, more than the {memory} budget of {format_size(budget)}: use "
            + ", or ".join(fixes))
    pool.make_room(memory, need, set(registry.in_use), registry.released, f"the work of node '{ctx.node_id}'")


__all__ = ["MemoryEstimateExceeded", "PlannedCall", "call_size", "check_working_memory", "component_config", "planned_work",
           "work_bytes", "working_bytes"]
