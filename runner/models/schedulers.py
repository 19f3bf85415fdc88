"""Schedulers by short name, built from the checkpoint's own scheduler config (no reload)."""

from __future__ import annotations

from typing import Any

# short name -> (diffusers class, config overrides)
SCHEDULER_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "dpmpp_2m_sde_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "kdpm2": ("KDPM2DiscreteScheduler", {}),
    "kdpm2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}


def make_scheduler(name: str | None, base_config, default_class: type, names: dict | None = None):
    """A new scheduler instance: the checkpoint's class when `name` is None, else the named one (from `names`, a
    model family's own table, or runner's usual one)."""
    if name is None:
        return default_class.from_config(base_config)
    import diffusers

    class_name, overrides = (names or SCHEDULER_CLASSES)[name]
    if callable(overrides):  # settings that follow the checkpoint's own schedule (a flow shift)
        overrides = overrides(base_config)
    return getattr(diffusers, class_name).from_config(base_config, **overrides)
