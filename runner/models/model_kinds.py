"""What kind of model a local file or folder holds, read cheaply from the files (no torch): a checkpoint
(pipeline), a ControlNet, a VAE or a LoRA. Used to refuse, before anything runs, a model used in the wrong place."""

from __future__ import annotations

import json
from pathlib import Path

from .weights_file import safetensors_header

# what each kind is called in messages, and where a workflow uses it
KIND_NAMES = {"pipeline": "a checkpoint", "controlnet": "a ControlNet", "vae": "a VAE", "lora": "a LoRA",
              "text_encoder": "a text encoder", "embedding": "a textual-inversion embedding",
              "adapter": "a T2I-Adapter", "ip_adapter": "an IP-Adapter", "image_encoder": "an image encoder",
              "depth-estimator": "a depth estimator", "pose-estimator": "a pose estimator",
              "object-detector": "a person detector"}
KIND_USE = {
    "pipeline": "use it as a generation node's model: (or a model entry's source)",
    "controlnet": "put it under a node's controlnet: [{model: ..., image: ...}]",
    "lora": "put it under a node's lora: [{model: ..., scale: ...}]",
    "adapter": "put it under a txt2img node's adapter: [{model: ..., image: ...}]",
    "ip_adapter": "put it under a node's ip_adapter: [{model: ..., image: ...}]",
    "image_encoder": "give it to an ip_adapter item as image_encoder:",
    "vae": "give it to a checkpoint's model entry as vae: (models: {NAME: {source: CHECKPOINT, vae: THIS}})",
    "text_encoder": "give it to a checkpoint's model entry as text_encoder: (or text_encoder_2:, text_encoder_3:)",
    "embedding": "give it to a checkpoint's model entry under embeddings: {TOKEN: THIS}",
    "depth-estimator": "use it as an estimate_depth node's model:",
    "pose-estimator": "use it as a detect_pose node's model:",
    "object-detector": "use it as a detect_pose node's detector:",
}
# the kinds a place accepts (a diffusion upscaler is a pipeline; a VAE may come from a checkpoint's vae/)
ACCEPTED = {"upscaler": ("pipeline",), "vae": ("vae", "pipeline"), "text_encoder": ("text_encoder", "pipeline"),
            # an image encoder alone, or the image_encoder/ of an IP-Adapter folder or repository
            "image_encoder": ("image_encoder", "ip_adapter")}
# (the ControlNet classes of the model families are ControlNets too: see class_kind)
_DIFFUSERS_CLASS_KINDS = {"ControlNetModel": "controlnet", "ControlNetXSAdapter": "controlnet",
                          "T2IAdapter": "adapter", "MultiAdapter": "adapter", "AutoencoderKL": "vae", "AutoencoderTiny": "vae",
                          "ConsistencyDecoderVAE": "vae"}
LORA_FILES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")


def class_kind(class_name: str | None) -> str | None:
    """The kind of model a diffusers class name in a config.json says ("controlnet", "vae", "adapter"), or None."""
    from .families import FAMILIES

    if class_name and any(family.controlnet_class == class_name for family in FAMILIES):
        return "controlnet"
    return _DIFFUSERS_CLASS_KINDS.get(class_name or "")


def local_kind(path: Path) -> str | None:
    """"pipeline", "controlnet", "vae" or "lora" for a model folder or single .safetensors file when its files say
    so; None when they do not (a transformers model, a pickle file: nothing is refused on a guess)."""
    path = Path(path)
    if path.is_dir():
        if (path / "model_index.json").is_file():  # a pipeline, or a family's ControlNet that is a whole decoder
            return "controlnet" if class_kind(_class_name(path / "model_index.json")) == "controlnet" else "pipeline"
        if any((path / name).is_file() for name in LORA_FILES):
            return "lora"
        config = path / "config.json"
        if config.is_file():
            try:
                data = json.loads(config.read_text())
            except (OSError, ValueError):
                return None
            return class_kind(data.get("_class_name")) if isinstance(data, dict) else None
        return None
    if path.suffix.lower() != ".safetensors":
        return None
    header = safetensors_header(path)
    if not header:
        return None
    return _keys_kind([name for name in header if name != "__metadata__"])


def _class_name(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    name = data.get("_class_name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _keys_kind(keys: list[str]) -> str | None:
    """The kind of a single-file checkpoint from its tensor names (A1111/ComfyUI and diffusers layouts)."""
    if keys == ["emb_params"] or (keys and set(keys) <= {"clip_l", "clip_g"}) or (len(keys) == 1 and "." not in keys[0]):
        return "embedding"  # A1111's emb_params, SDXL's clip_l + clip_g, diffusers' one token
    if keys and all(k.startswith(("image_proj.", "ip_adapter.")) for k in keys) or any(
            k.startswith("ip_adapter_proj_model.") for k in keys):
        return "ip_adapter"  # h94/IP-Adapter's layout (ComfyUI's ipadapter/), XLabs' FLUX one
    if any(k.startswith(("model.diffusion_model.", "double_blocks.", "joint_blocks.")) for k in keys):
        return "pipeline"  # a whole checkpoint, or a FLUX.1 / SD3 transformer alone (ComfyUI's diffusion_models/)
    if any(k.startswith("text_model.") for k in keys) or ("shared.weight" in keys and any(
            k.startswith("encoder.block.") for k in keys)):
        return "text_encoder"  # CLIP or T5 in the transformers layout (ComfyUI's text_encoders/, clip/)
    if any(k.startswith("control_model.") or k.startswith(("controlnet_cond_embedding.", "controlnet_down_blocks."))
           for k in keys):
        return "controlnet"
    if any("lora_" in k or ".lora." in k or k.startswith("lora_") for k in keys):
        return "lora"
    if keys and all(k.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "first_stage_model."))
                    for k in keys):
        return "vae"
    return None


def wrong_kind(found: str | None, wanted: str) -> bool:
    """Whether a model of kind `found` cannot serve where `wanted` is expected (unknown kinds are let through)."""
    if found is None:
        return False
    return found not in ACCEPTED.get(wanted, (wanted,))
