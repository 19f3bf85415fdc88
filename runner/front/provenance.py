"""What a run records about where its results came from: git state, A1111-style parameters text."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from typing import Any


def git_state(path: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the git repository holding `path`, or None outside a repository (or without git)."""
    folder = path.resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    file_status = git("status", "--porcelain", "--", path.resolve().name)
    return {"commit": commit, "dirty": bool(status), "workflow_file_modified": bool(file_status)}


def png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


def a1111_parameters(fields: Any, seed: int | None, size: tuple[int, int], model: str, scheduler: str | None) -> str | None:
    """The `parameters` text that A1111-style image browsers show: prompt, negative prompt, then settings."""
    prompt = getattr(fields, "prompt", None)
    if prompt is None:
        return None
    lines = [prompt]
    negative = getattr(fields, "negative_prompt", None)
    if negative:
        lines.append(f"Negative prompt: {negative}")
    settings = []
    steps = getattr(fields, "steps", None)
    if steps is not None:
        settings.append(f"Steps: {steps}")
    if scheduler:
        settings.append(f"Sampler: {scheduler}")
    guidance = getattr(fields, "guidance_scale", None)
    if guidance is not None:
        settings.append(f"CFG scale: {guidance}")
    if seed is not None:
        settings.append(f"Seed: {seed}")
    settings.append(f"Size: {size[0]}x{size[1]}")
    settings.append(f"Model: {model}")
    strength = getattr(fields, "strength", None)
    if strength is not None:
        settings.append(f"Denoising strength: {strength}")
    lines.append(", ".join(settings))
    return "\n".join(lines)
