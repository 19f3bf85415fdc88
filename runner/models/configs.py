"""A model component's config read from its files, without loading anything (no torch): what validation knows of a
checkpoint's denoiser (its input channels) or of a ControlNet (its class and conditioning) before a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 1 << 20  # a component's config.json is a few kilobytes


def component_config(source, component: str | None = None) -> dict[str, Any] | None:
    """The config.json of `component` (a pipeline's subfolder such as "unet"; None: a single-component model such as a
    ControlNet) for a tiny model, a local folder or a cached hub snapshot; None when it cannot be read here."""
    if source.kind == "tiny":
        from .tiny import tiny_config, tiny_kind, tiny_pipeline_classes

        try:
            if component is None:
                if tiny_kind(source.location) != "controlnet":
                    return None
                pipeline = tiny_pipeline_classes(source.location).get("")
                # a family's ControlNet that is a whole decoder: what its model_index.json says
                return {"_class_name": pipeline} if pipeline else tiny_config(source.location, "controlnet")
            return tiny_config(source.location, component)
        except ValueError:
            return None
    if source.kind not in ("folder", "hub"):
        return None
    from .sources import local_folder

    folder = local_folder(source, Path())
    if folder is None or not folder.is_dir():
        return None
    if source.entry.subfolder:
        folder = folder / source.entry.subfolder
    # a single-component model's config.json, or (a family's ControlNet that is a whole decoder) its model_index.json
    places = [folder / "config.json", folder / "model_index.json"] if component is None else [
        folder / component / "config.json", folder / "decoder" / component / "config.json"]
    for path in places:
        if path.is_file():
            return _read(path)
    return None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        config = json.loads(data) if len(data) <= MAX_CONFIG_BYTES else None
    except (OSError, ValueError, RecursionError):
        return None
    return config if isinstance(config, dict) else None


def lora_facts(source) -> dict[str, Any] | None:
    """What a LoRA's files say about the model it was trained on (no torch): which denoiser it adapts ("unet" or
    "transformer"), how wide the text its cross-attention layers read is, whether it has single-stream blocks (FLUX's).
    From the tiny spec, or the safetensors header of a local file or folder; None when unknown here."""
    if source.kind == "tiny":
        from .tiny import tiny_config

        try:
            config = tiny_config(source.location, "lora")
        except ValueError:
            return None
        if config is None:
            return None
        denoiser = config.get("denoiser", "UNet2DConditionModel")
        layers = config.get("config") or config.get("unet") or {}
        unet = denoiser == "UNet2DConditionModel"
        return {"denoiser": "unet" if unet else "transformer",
                "cross_attention_dim": layers.get("cross_attention_dim") if unet else None,
                "single_blocks": "num_single_layers" in layers}
    if source.kind not in ("folder", "file", "hub"):
        return None
    from .sources import local_folder
    from .weights_file import safetensors_header

    path = local_folder(source, Path())
    if path is not None and path.is_dir():
        path = next((p for p in sorted(path.glob("*.safetensors"))), None)
    header = safetensors_header(path) if path is not None and path.is_file() and path.suffix == ".safetensors" else None
    if not header:
        return None
    return header_facts({name: info for name, info in header.items() if isinstance(info, dict)})


def header_facts(tensors: dict[str, dict]) -> dict[str, Any]:
    """LoRA facts from tensor names and shapes (diffusers' `unet.` / `transformer.` prefixes, kohya's `lora_unet_`)."""
    names = list(tensors)
    unet = any(name.startswith(("unet.", "lora_unet_")) for name in names)
    transformer = any(name.startswith(("transformer.", "lora_transformer_")) for name in names)
    width = None
    for name in names:
        if "attn2" in name and "to_k" in name and any(part in name for part in ("lora_A", "lora.down", "lora_down")):
            shape = tensors[name].get("shape")
            if isinstance(shape, list) and len(shape) == 2 and isinstance(shape[1], int):
                width = shape[1]
                break
    return {"denoiser": "unet" if unet and not transformer else "transformer" if transformer and not unet else None,
            "cross_attention_dim": width,
            "single_blocks": any("single_transformer_blocks" in name or "single_blocks" in name for name in names)}
