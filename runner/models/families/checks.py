"""Checks every family's checkpoints share, worded in the families' own terms: a denoiser taking the input channels
of another task (an inpainting checkpoint in a txt2img node), a ControlNet made for another family. Validation asks
them with configs read from files; the run asks them again with the loaded models."""

from __future__ import annotations

from .base import Family

# what a checkpoint is, by its denoiser's input channels
CHANNEL_KINDS = {4: "a standard", 9: "an inpainting", 5: "a depth-to-image"}
# where a checkpoint of these channels belongs, when another task refuses it
CHANNEL_PLACES = {9: "an inpaint node", 5: "a depth2img node"}


def channel_problem(family: Family, task_name: str, channels: int, label: str, used_by: str) -> tuple[str, str] | None:
    """(message, fix) when `channels` (the denoiser's input channels) do not fit the task, else None."""
    task = family.task(task_name)
    if task is None or not task.channels or channels in task.channels:
        return None
    what = CHANNEL_KINDS.get(channels, f"a {channels}-channel")
    made_for = CHANNEL_PLACES.get(channels)
    base = family.example("checkpoint")
    if made_for is not None:
        fix = f"use it in {made_for}" + (", or use the base (non-inpainting) checkpoint here"
                                                 + (f" ({base})" if base else "") if channels == 9 else "")
    else:
        fix = (f"use a checkpoint made for it here ({task.example})" if task.example else
               "use a checkpoint made for this task")
    return (f"model '{label}' is {what} checkpoint ({family.name}; its denoiser takes {channels} input channels), "
            f"which {used_by} cannot use", fix)


def controlnet_problem(family: Family, label: str, cn_label: str, config: dict) -> tuple[str, str] | None:
    """(message, fix) when a ControlNet (its config.json, with `_class_name`) was not made for `family`, else None."""
    from . import FAMILIES

    if family.controlnet_fits is not None and family.controlnet_fits(config):
        return None
    made_for = next((other for other in FAMILIES if other.controlnet_fits is not None and other.controlnet_fits(config)),
                    None)
    own = f"{_a(family.name)} ControlNet here" + (f" ({family.example('controlnet')})" if family.example("controlnet") else "")
    if made_for is None:
        return (f"ControlNet '{cn_label}' ({config.get('_class_name', 'an unknown class')}) was made for no model family "
                f"runner runs ControlNets on, and '{label}' is {_a(family.name)} checkpoint",
                f"use {own}")
    return (f"ControlNet '{cn_label}' was made for {made_for.name} checkpoints, but '{label}' is {_a(family.name)} "
            "checkpoint: a ControlNet works only with the model family it was trained for",
            f"use {own}, or run '{cn_label}' with {_a(made_for.name)} checkpoint"
            + (f" ({made_for.example('checkpoint')})" if made_for.example("checkpoint") else ""))


def _a(name: str) -> str:
    """The word with its article: an SDXL checkpoint, an img2img node, a Kandinsky 2.2 model."""
    return ("an " if name[:1].lower() in "aeiou" or name.startswith("SD") else "a ") + name


def unet_lora_fits(facts: dict, denoiser: dict) -> bool:
    """A UNet family's LoRA: UNet layers whose cross-attention reads text as wide as the checkpoint's (SD 1.x 768,
    SD 2.x 1024, SDXL 2048: another width is another family or version)."""
    width, own = facts.get("cross_attention_dim"), denoiser.get("cross_attention_dim")
    return facts.get("denoiser") == "unet" and (width is None or own is None or width == own)


def lora_problem(family: Family, label: str, lora_label: str, facts: dict, denoiser: dict) -> tuple[str, str] | None:
    """(message, fix) when a LoRA (what its files say) was not made for the checkpoint's family, else None."""
    if family.lora_fits is None or family.lora_fits(facts, denoiser):
        return None
    what = {"unet": "a UNet", "transformer": "a transformer"}.get(facts.get("denoiser"), "another model")
    detail = f"it adapts {what}"
    if facts.get("cross_attention_dim") and denoiser.get("cross_attention_dim"):
        detail += (f" whose cross-attention reads text {facts['cross_attention_dim']} wide, the checkpoint's "
                   f"{denoiser['cross_attention_dim']}")
    elif facts.get("single_blocks"):
        detail += " with single-stream blocks (FLUX.1's)"
    return (f"LoRA '{lora_label}' was not made for '{label}' ({family.name}): {detail}; a LoRA works only with the "
            "model family (and version) it was trained on",
            f"use a LoRA trained on {family.name}, or run '{lora_label}' with a checkpoint of its family")


def runtime_option_problems(family: Family, label: str, fields) -> list[tuple[tuple, str, str]]:
    """(field path, message, fix) for each run-time option set on the node's `fields` (by the node, or by the workflow
    for every node) that `family` does not apply: any of them where it applies none (Kandinsky 2.x), step_cache on
    a UNet. Validation asks it where the family is known from files; the run and the export where it is known later."""
    from ...core.runtime import RUNTIME_OPTIONS
    from . import FAMILIES

    used = [name for name in RUNTIME_OPTIONS if getattr(fields, name, None)]
    if used and not family.runtime_options:
        return [((name,), f"not applied to {family.name} models (model '{label}') in this version of runner",
                 f"remove {name} from this node (and from the workflow, where it sets it for every node)")
                for name in used]
    if getattr(fields, "step_cache", None) and not family.step_cache:
        return [(("step_cache",), f"step_cache is for transformer denoisers, and {family.name} (model '{label}') has a "
                                  "UNet", "remove step_cache from this node, or from the workflow, where it sets it for "
                                          "every node (" + ", ".join(other.name for other in FAMILIES
                                                                       if other.step_cache) + " take it)")]
    return []
