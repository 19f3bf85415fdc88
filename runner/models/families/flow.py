"""Scheduler names on the flow-matching families (SD3 / SD3.5, FLUX.1): their denoisers predict a velocity, so
"euler" is FlowMatchEulerDiscreteScheduler, and the multistep solvers run on flow sigmas; the noise-predicting
samplers of SD and SDXL (ddim, pndm, euler_a, ...) have no meaning there."""

from __future__ import annotations


def _flow_solver(config) -> dict:
    """DPM-Solver++ / UniPC on flow sigmas, shifted as the checkpoint's own schedule is."""
    return {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": config.get("shift", 1.0)}


FLOW_SCHEDULERS = {
    "euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", _flow_solver),
    "unipc": ("UniPCMultistepScheduler", _flow_solver),
}
