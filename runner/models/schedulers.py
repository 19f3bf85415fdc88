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

    table = names or SCHEDULER_CLASSES
    if name not in table:  # a family known only once loaded (validation could not tell)
        from .errors import NodeInputError

        raise NodeInputError(f"scheduler '{name}' is not one this model's family runs with; use one of: "
                             f"{', '.join(table)}, or leave scheduler out (the checkpoint's own)")
    class_name, overrides = table[name]
    if callable(overrides):  # settings that follow the checkpoint's own schedule (a flow shift)
        overrides = overrides(base_config)
    return getattr(diffusers, class_name).from_config(base_config, **overrides)


# The samplers that need no scaling of their model inputs (scale_model_input is the identity, init_noise_sigma 1):
# the only ones pipelines that never call scale_model_input (Kandinsky 2.x and 3) run correctly.
UNSCALED_SCHEDULERS = {name: SCHEDULER_CLASSES[name] for name in
                       ("ddpm", "ddim", "deis", "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_2m_sde", "dpmpp_2m_sde_karras",
                        "pndm", "unipc")}
