"""Prompt embeddings computed once and reused (issue 28): nodes on the same checkpoint with the same prompts, CLIP
skip and guidance get the embeddings the first of them computed with the pipeline's own `encode_prompt`, passed as
diffusers' `prompt_embeds` (and SDXL's pooled ones), within a run and across a Session's runs.

The pipeline would compute exactly these: `encode_prompt` for one image, as the pipeline itself calls it, gives the
tensors it then repeats for num_images_per_prompt; with embeddings passed it repeats those. Where anything else
changes what the text encoders give (a LoRA loaded for the node, a lora scale in cross_attention_kwargs, embeddings
already in the call: weighted prompts), nothing is reused. The manifest's `call` keeps the prompt text (what replays
the node in plain diffusers) and `prompt_embeddings` says "computed" or "reused".
"""

from __future__ import annotations

import inspect
from typing import Any

TEXT_ARGUMENTS = ("prompt", "negative_prompt", "prompt_2", "negative_prompt_2")
EMBEDDING_ARGUMENTS = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")


def with_reused_embeddings(ctx, pipe, identity: str, kwargs: dict[str, Any], loras: bool) -> tuple[dict[str, Any], str | None]:
    """(the call's arguments with the prompts replaced by their embeddings, "computed" / "reused"), or the arguments
    as they are and None where the embeddings cannot be reused safely."""
    if loras or any(name in kwargs for name in EMBEDDING_ARGUMENTS) or "cross_attention_kwargs" in kwargs:
        return kwargs, None
    encode = getattr(pipe, "encode_prompt", None)
    if encode is None or not isinstance(kwargs.get("prompt", ""), str):
        return kwargs, None
    takes = inspect.signature(encode).parameters
    call = inspect.signature(pipe.__call__).parameters
    if not all(name in call for name in ("prompt_embeds", "negative_prompt_embeds")):
        return kwargs, None
    sdxl = "pooled_prompt_embeds" in call and "prompt_2" in takes
    if sdxl and "negative_pooled_prompt_embeds" not in call:
        return kwargs, None
    guidance = kwargs.get("guidance_scale", call["guidance_scale"].default if "guidance_scale" in call else None)
    unet = getattr(pipe, "unet", None)
    if guidance is None or unet is None:
        return kwargs, None
    guided = guidance > 1 and getattr(unet.config, "time_cond_proj_dim", None) is None
    texts = {name: kwargs.get(name) for name in TEXT_ARGUMENTS if name in takes}
    clip_skip = kwargs.get("clip_skip")
    new = "fresh"

    def compute():
        nonlocal new
        import torch

        new = "computed"
        arguments = {name: value for name, value in texts.items() if value is not None}
        arguments.setdefault("prompt", "")
        with torch.no_grad():
            found = encode(device=ctx.models.device, num_images_per_prompt=1, do_classifier_free_guidance=guided,
                           clip_skip=clip_skip, **arguments)
        return tuple(found)

    key = ("prompt-embeds", identity, _code_digest(type(pipe).encode_prompt), tuple(sorted(texts.items())), clip_skip,
           guided)
    found = ctx.models.cached(key, compute, group=identity)
    kwargs = {name: value for name, value in kwargs.items() if name not in TEXT_ARGUMENTS and name != "clip_skip"}
    names = EMBEDDING_ARGUMENTS if sdxl else EMBEDDING_ARGUMENTS[:2]
    kwargs.update({name: value for name, value in zip(names, found) if value is not None})
    return kwargs, ("computed" if new == "computed" else "reused")


def _code_digest(function) -> str:
    """What a pipeline's encode_prompt does, as its bytecode: diffusers copies one encode_prompt into every pipeline
    of a family (text-to-image, img2img, inpaint, ControlNet, PAG, adapters), so they share their embeddings."""
    import hashlib

    code = function.__code__
    return hashlib.sha256(repr((code.co_code, code.co_consts, code.co_names, code.co_varnames)).encode()).hexdigest()
