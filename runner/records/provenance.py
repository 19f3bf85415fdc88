"""What a run records about where its results came from: git state, A1111-style parameters text."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from typing import Any

from ..core.hashing import sha256_file


def git_state(path: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the git repository holding `path`, or None outside a repository (or without git)."""
    folder = path.resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # one call for the commit and the dirty flag (porcelain v2's header names the commit: "# branch.oid SHA", or
    # "(initial)" before the first commit), one for the workflow file (untracked counts as modified)
    status = git("status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status is None:
        return None
    lines = status.splitlines()
    commit = next((line.removeprefix("# branch.oid ").strip() for line in lines if line.startswith("# branch.oid ")),
                  None)
    if not commit or commit == "(initial)":
        return None
    file_status = git("status", "--porcelain", "--", path.resolve().name)
    dirty = any(line and not line.startswith("#") for line in lines)
    return {"commit": commit, "dirty": dirty, "workflow_file_modified": bool(file_status)}


def png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def saved_file_record(folder: Path, name: str) -> dict[str, Any]:
    """What a run folder's saved file is: its path (relative to the folder), bytes, sha256 and, for a PNG, its pixel
    size (from the header; nothing is decoded). A file that is gone is recorded as missing."""
    path = folder / name
    try:
        with path.open("rb") as handle:
            head = handle.read(24)
        record: dict[str, Any] = {"path": name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    except OSError:
        return {"path": name, "missing": True}
    if head.startswith(PNG_SIGNATURE) and len(head) == 24:
        record["width"], record["height"] = png_size(head)
    return record


# diffusers scheduler class -> the sampler name A1111 writes (with Karras sigmas: "... Karras")
A1111_SAMPLERS = {
    "EulerDiscreteScheduler": "Euler", "EulerAncestralDiscreteScheduler": "Euler a", "HeunDiscreteScheduler": "Heun",
    "KDPM2DiscreteScheduler": "DPM2", "KDPM2AncestralDiscreteScheduler": "DPM2 a", "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS", "UniPCMultistepScheduler": "UniPC", "LCMScheduler": "LCM", "DEISMultistepScheduler": "DEIS",
    "DDPMScheduler": "DDPM", "LMSDiscreteScheduler": "LMS", "DPMSolverSinglestepScheduler": "DPM++ SDE",
}


def a1111_sampler(scheduler: str | None, config: dict) -> str | None:
    """A sampler name as A1111 writes it ("DPM++ 2M Karras", "Euler a"), from the scheduler class and its config."""
    if scheduler is None:
        return None
    if scheduler == "DPMSolverMultistepScheduler":
        name = "DPM++ 2M SDE" if "sde" in str(config.get("algorithm_type", "")) else "DPM++ 2M"
    else:
        name = A1111_SAMPLERS.get(scheduler, scheduler)
    return name + (" Karras" if config.get("use_karras_sigmas") else "")


def a1111_name(label: str) -> str:
    """A model or LoRA name as A1111 shows it: the file or repository name, without ':' (parsers split on it)."""
    name = label.rstrip("/").split("/")[-1]
    for suffix in (".safetensors", ".ckpt", ".pt", ".bin"):
        name = name.removesuffix(suffix)
    return name.replace(":", "-")


def a1111_parameters(info: dict, seed: int | None, size: tuple[int, int], model: str, model_hash: str | None,
                     loras: list[tuple[str, float, str | None]] = ()) -> str | None:
    """The `parameters` text A1111 writes and image browsers parse: the prompt (with <lora:NAME:SCALE> tags), the
    negative prompt, then Steps, Sampler, CFG scale, Seed, Size, Model hash, Model, Denoising strength, Lora hashes.
    Built from what the node recorded of its pipeline call (`info`: the arguments passed, `call`, and the pipeline's
    own defaults for those it left out, `call_defaults`): the values that ran, never read from the node's fields.
    None when the call took no text prompt."""
    call = info.get("call", {})
    used = {**info.get("call_defaults", {}), **call}
    prompt = used.get("prompt")
    if not isinstance(prompt, str):
        return None
    lines = [prompt + "".join(f" <lora:{name}:{scale:g}>" for name, scale, _hash in loras)]
    negative = used.get("negative_prompt")
    if isinstance(negative, str) and negative:
        lines.append(f"Negative prompt: {negative}")
    settings = []
    steps = used.get("num_inference_steps")
    if isinstance(steps, int):
        settings.append(f"Steps: {steps}")
    sampler = a1111_sampler(info.get("scheduler"), info.get("scheduler_config", {}))
    if sampler:
        settings.append(f"Sampler: {sampler}")
    guidance = used.get("guidance_scale")
    if isinstance(guidance, (int, float)):
        settings.append(f"CFG scale: {guidance:g}")
    if seed is not None:
        settings.append(f"Seed: {seed}")
    settings.append(f"Size: {size[0]}x{size[1]}")
    if model_hash:
        settings.append(f"Model hash: {model_hash[:10]}")
    settings.append(f"Model: {a1111_name(model)}")
    strength = used.get("strength") if "image" in call else None
    if isinstance(strength, (int, float)):
        settings.append(f"Denoising strength: {strength:g}")
    hashes = [f"{name}: {digest[:10]}" for name, _scale, digest in loras if digest]
    if hashes:
        settings.append(f'Lora hashes: "{", ".join(hashes)}"')
    lines.append(", ".join(settings))
    return "\n".join(lines)
