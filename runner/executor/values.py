"""How output values are stored in cache entries: images as PNG, latents as safetensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.kinds import IMAGE_KINDS


def write_value(kind: str, value: Any, stem: Path) -> list[str]:
    if kind in IMAGE_KINDS:
        path = stem.with_suffix(".png")
        value.save(path, format="PNG")
        return [path.name]
    if kind == "images":
        names = []
        for index, image in enumerate(value):
            path = stem.parent / f"{stem.name}_{index:03d}.png"
            image.save(path, format="PNG")
            names.append(path.name)
        return names
    if kind == "latents":
        from safetensors.torch import save_file

        path = stem.with_suffix(".safetensors")
        save_file({"latents": value.detach().to("cpu").contiguous()}, str(path))
        return [path.name]
    raise ValueError(f"cannot store an output of kind {kind!r}")


def read_value(kind: str, files: list[Path]) -> Any:
    if kind in IMAGE_KINDS:
        return _open_image(files[0])
    if kind == "images":
        return [_open_image(f) for f in files]
    if kind == "latents":
        from safetensors.torch import load_file

        return load_file(str(files[0]))["latents"]
    raise ValueError(f"cannot read an output of kind {kind!r}")


def _open_image(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.copy() if image.mode != "P" else image.convert("RGBA")
