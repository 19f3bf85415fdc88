"""The parts of a checkpoint a model entry names files for (`vae:`, `text_encoder:`, `text_encoder_2:`,
`text_encoder_3:`), loaded as diffusers documents swapping them (`Pipeline.from_pretrained(..., vae=vae)`), and the
denoiser-only and whole single files of the transformer families, which ComfyUI users keep as separate files (a
FLUX.1 transformer in diffusion_models/, its text encoders in text_encoders/, its VAE in vae/).

A part's weights are read with the config of the checkpoint it joins: the checkpoint folder's, or a single file's
config folder (its entry's `config:`, the one runner ships, or the config files of diffusers' own repository for
the architecture). A part may be a single .safetensors file (a VAE in the original layout, a text encoder in the
transformers layout: ComfyUI's clip_l.safetensors, t5xxl_fp16.safetensors), a model folder, a pipeline folder (its
subfolder of the part's name is used), a hub id or tiny:NAME.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.model_entry import PARTS
from .sources import ModelSource, ModelUnavailable, missing_safetensors_explained, part_source

# pooled-output projections a text encoder file may leave out: diffusers' single-file loader then uses the identity
# (SD3's CLIP-L, as Stability and ComfyUI use its pooled output unprojected)
IDENTITY_WHEN_MISSING = ("text_projection.weight",)


def own_config(registry, source: ModelSource) -> Path | None:
    """The folder holding the checkpoint's diffusers config: the checkpoint folder, or its single file's config."""
    if source.kind != "file":
        return registry.model_folder(source)
    from .single_file import config_folder

    return config_folder(source.location, source.label, registry.single_file_config(source), registry.models_dir)


def part_overrides(registry, source: ModelSource) -> dict[str, Any]:
    """The loaded parts the model entry names, by component name."""
    named = [part for part in PARTS if getattr(source.entry, part)]
    if not named:
        return {}
    own = own_config(registry, source)
    return {part: load_part(registry, source, part, own) for part in named}


def load_part(registry, source: ModelSource, part: str, own: Path | None):
    if part == "vae":
        return _vae(registry, source, own)
    return _text_encoder(registry, source, part, own)


def _vae(registry, source: ModelSource, own: Path | None):
    """A VAE folder, a pipeline folder's vae/ (tiny and hub models too), or a single file read with the checkpoint's
    own VAE config (offline, from_single_file has no other config to read)."""
    from diffusers import AutoencoderKL

    vae = part_source(source, "vae")
    location, kwargs = registry.pretrained_args(vae)
    kwargs.pop("variant", None)
    folder = registry.model_folder(vae)
    if vae.kind == "file":
        if own is not None and (own / "vae" / "config.json").is_file():
            kwargs.update(config=str(own), subfolder="vae")
        kwargs.pop("use_safetensors", None)
        model = AutoencoderKL.from_single_file(location, **kwargs)
        _refuse_missing(model, vae, "vae", source)
        return model
    if folder is not None and (folder / "model_index.json").is_file():
        kwargs["subfolder"] = "vae"
    with missing_safetensors_explained(vae):
        return AutoencoderKL.from_pretrained(location, **kwargs)


def _text_encoder(registry, source: ModelSource, part: str, own: Path | None):
    """A text encoder of the class the checkpoint's model_index.json names for `part`."""
    import transformers

    given = part_source(source, part)
    index = _index(own)
    entry = index.get(part)
    if not (isinstance(entry, list) and len(entry) == 2 and entry[1]):
        has = [name for name, value in index.items() if name.startswith("text_encoder") and isinstance(value, list) and value[1]]
        raise ModelUnavailable(
            f"model '{source.label}': its pipeline has no {part} (its text encoders: {', '.join(has) or 'none'}), so "
            f"'{given.label}' has nowhere to go", f"remove {part}: from the model entry"
            + (f", or give it as {has[0]}:" if has and part not in has else ""))
    cls = getattr(transformers, entry[1], None)
    if cls is None:
        raise ModelUnavailable(f"model '{source.label}': its {part} is a {entry[1]}, which runner cannot load from "
                               f"'{given.label}'", f"remove {part}: from the model entry")
    location, kwargs = registry.pretrained_args(given)
    kwargs.pop("variant", None)
    if given.kind == "file":
        path = Path(location)
        if path.suffix.lower() != ".safetensors":
            raise ModelUnavailable(f"text encoder '{given.label}' is not a .safetensors file; runner reads text encoder "
                                   "files as safetensors only", "use its .safetensors version")
        from safetensors.torch import load_file

        config = cls.config_class.from_pretrained(str(own), subfolder=part)
        # transformers applies its own key renames (CLIP's text_model. prefix, T5's tied embeddings) on this path
        model = cls.from_pretrained(None, config=config, state_dict=load_file(str(path)), dtype=registry.dtype)
    else:
        folder = registry.model_folder(given)
        if folder is not None and (folder / "model_index.json").is_file():
            kwargs["subfolder"] = part
        with missing_safetensors_explained(given):
            model = cls.from_pretrained(location, **kwargs)
    _refuse_missing(model, given, part, source)
    return model.eval()


def _refuse_missing(model, given: ModelSource, part: str, source: ModelSource) -> None:
    """Weights a file left out stay on torch's meta device (the loaders do not fail): a pooled projection becomes the
    identity, as diffusers' own single-file loader makes it; anything else is refused, naming what is missing."""
    import torch

    missing = [name for name, tensor in list(model.named_parameters()) + list(model.named_buffers())
               if tensor.device.type == "meta"]
    for name in [n for n in missing if n in IDENTITY_WHEN_MISSING]:
        module_name, _, attribute = name.rpartition(".")
        module = model.get_submodule(module_name)
        rows, columns = module.weight.shape
        setattr(module, attribute, torch.nn.Parameter(torch.eye(rows, columns, dtype=torch.float32).to(
            next(p for n, p in model.named_parameters() if n != name).dtype), requires_grad=False))
        missing.remove(name)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelUnavailable(f"{part} '{given.label}' of model '{source.label}' lacks weights the checkpoint's "
                               f"{part} has ({shown}): it was made for another model",
                               f"give {part}: a file made for this model")


def _index(folder: Path | None) -> dict:
    try:
        data = json.loads((folder / "model_index.json").read_text()) if folder is not None else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------- transformer families' files
def load_transformer_checkpoint(registry, source: ModelSource, config_dir: Path, parts: dict[str, Any],
                                overrides: dict[str, Any], held: dict[str, tuple[str, ...]]):
    """A transformer family's single file (SD3 / SD3.5, FLUX.1): a whole checkpoint (its denoiser under
    model.diffusion_model., with its VAE and maybe text encoders) through the pipeline's `from_single_file`, or the
    denoiser alone (ComfyUI's diffusion_models/) through the denoiser's `from_single_file`, the rest from `parts` and
    the config folder. `overrides`: config values the file's weights decide (FLUX.1's guidance embedder); `held`:
    the key prefixes of each component a whole file may hold (the family's)."""
    import diffusers

    from .single_file import file_keys

    path = Path(source.location)
    index = _index(config_dir)
    cls = getattr(diffusers, str(index.get("_class_name")), None)
    if cls is None:
        raise ModelUnavailable(f"the diffusers config {config_dir} of model '{source.label}' has no usable "
                               "model_index.json", "name a diffusers folder of the same model as config:")
    keys = file_keys(path) or []
    dtype = registry.dtype
    if any(key.startswith("model.diffusion_model.") for key in keys):  # a whole checkpoint
        parts = dict(parts)
        missing = []
        for name, prefixes in held.items():
            if name in parts or name not in index or any(key.startswith(prefixes) for key in keys):
                continue
            if _has_weights(config_dir / name):  # diffusers would not look there for it: load it from there
                parts[name] = _from_folder(config_dir, name, index, dtype)
            else:
                missing.append(name)
        if missing:
            raise ModelUnavailable(
                f"single-file checkpoint '{source.label}' ({path}) does not hold its {', '.join(missing)} (Stability's "
                f"SD3.5 files and most FLUX.1 files leave the text encoders out), nor does its config {config_dir}",
                "name them on the model entry: " + _parts_example(index, missing))
        pipe = cls.from_single_file(str(path), config=str(config_dir), dtype=dtype, **parts)
    else:  # the denoiser alone
        denoiser = next((name for name in ("transformer", "unet") if name in index), None)
        if denoiser is None:
            raise ModelUnavailable(f"the config {config_dir} of model '{source.label}' has no transformer or unet",
                                   "name the diffusers config of the model the file was made for as config:")
        missing = [name for name, value in index.items()
                   if isinstance(value, list) and len(value) == 2 and value[1] and name != denoiser and name not in parts
                   and not name.startswith(("tokenizer", "scheduler", "feature_extractor", "image_encoder", "safety"))
                   and not _has_weights(config_dir / name)]
        if missing:
            raise ModelUnavailable(
                f"model '{source.label}' ({path}) is a transformer alone (ComfyUI's diffusion_models/ layout), and its "
                f"config {config_dir} has no weights for its {', '.join(missing)}",
                "name them on the model entry: " + _parts_example(index, missing))
        model_cls = getattr(diffusers, index[denoiser][1])
        model = model_cls.from_single_file(str(path), config=str(config_dir), subfolder=denoiser, dtype=dtype,
                                           **overrides)
        _refuse_missing(model, source, denoiser, source)
        with missing_safetensors_explained(source):
            pipe = cls.from_pretrained(str(config_dir), **{denoiser: model}, **parts, dtype=dtype)
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        module = getattr(pipe, name, None)
        if module is not None and hasattr(module, "named_parameters"):
            _refuse_missing(module, source, name, source)
    return pipe


def _from_folder(config_dir: Path, name: str, index: dict, dtype):
    """Component `name` of a diffusers folder, as its model_index.json says (a transformers or diffusers class)."""
    import importlib

    library, class_name = index[name]
    cls = getattr(importlib.import_module(library if library in ("transformers", "diffusers") else "diffusers"), class_name)
    return cls.from_pretrained(str(config_dir), subfolder=name, dtype=dtype)


def _has_weights(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.safetensors"))


EXAMPLE_FILES = {"text_encoder": "clip_l.safetensors", "vae": "ae.safetensors"}


def _parts_example(index: dict, names: list[str]) -> str:
    """`text_encoder: clip_l.safetensors, text_encoder_2: t5xxl_fp16.safetensors, ...` for the pipeline's classes."""
    shown = []
    for name in names:
        value = index.get(name)
        cls = value[1] if isinstance(value, list) and len(value) == 2 else ""
        file = ("t5xxl_fp16.safetensors" if "T5" in str(cls) else "clip_g.safetensors" if name == "text_encoder_2"
                and "Projection" in str(cls) else EXAMPLE_FILES.get(name, "clip_l.safetensors"))
        shown.append(f"{name}: {file}")
    return "{source: ..., " + ", ".join(shown) + "} (ComfyUI keeps them in text_encoders/ or clip/, and vae/)"
