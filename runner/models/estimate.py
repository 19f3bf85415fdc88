"""What a pipeline call will need beyond its weights, estimated before the call, checked against the memory budget.

The largest working memory of a Stable Diffusion-style call is the VAE decode at full resolution: diffusers decodes
the whole batch at once, and the decoder's last blocks hold tensors of the first two `block_out_channels` at the
output size (the upsampled input of the last block, its GroupNorm output, the conv and shortcut outputs). The
estimate is

    images x height x width x bytes per value x 2 x (channels[0] + channels[1])

(with `vae_tiling`, one tile instead of the whole image), plus the latents and the float output images. It is an
estimate: it exists to refuse at once what cannot fit (64 images of 8192 x 8192 px would need terabytes), instead of
being killed by the kernel after minutes of allocation; calls well inside the budget are never refused.
"""

from __future__ import annotations

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
    channels = list(getattr(config, "block_out_channels", None) or [128, 256])
    top = channels[0] + (channels[1] if len(channels) > 1 else channels[0])
    dtype = str(getattr(vae, "dtype", "torch.float32")).replace("torch.", "")
    width_bytes = DTYPE_BYTES.get(dtype, 4)
    decode_pixels = height * width
    if tiled and config is not None:
        tile = int(getattr(vae, "tile_sample_min_size", 0) or getattr(config, "sample_size", 512) or 512)
        decode_pixels = min(decode_pixels, tile * tile)
    decode = images * decode_pixels * width_bytes * 2 * top
    latents = images * 4 * (height // 8) * (width // 8) * 4 * 3  # latents, noise and the scheduler's copy (float32)
    output = images * height * width * 3 * (4 + 1)  # the decoded float array and the 8-bit images
    total = decode + latents + output
    how = (f"{images} image{'s' if images != 1 else ''} of {width} x {height} px: the VAE decode about "
           f"{format_size(decode)}{' (tiled)' if tiled else ''}, latents and output images {format_size(latents + output)}")
    return total, how


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


__all__ = ["MemoryEstimateExceeded", "call_size", "check_working_memory", "working_bytes"]
