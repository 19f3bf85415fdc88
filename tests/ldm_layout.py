"""diffusers layout -> the original (LDM / A1111) single-file layout: the inverse of diffusers' convert_ldm_* functions.

Tests build single-file checkpoints from tiny (or meta-device, real-size) diffusers models with it, as people's
.safetensors checkpoints are laid out (after diffusers' old scripts/convert_diffusers_to_original_stable_diffusion.py
and its SDXL sibling, generalised to any number of blocks and layers per block).
"""

from __future__ import annotations

import re

UNET_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
               ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
            "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
            "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def unet_to_ldm(state: dict, config: dict, prefix: str = "model.diffusion_model.") -> dict:
    per_block = config["layers_per_block"]
    up_has_attention = {i: "CrossAttn" in kind for i, kind in enumerate(config["up_block_types"])}
    out = {}
    for key, value in state.items():
        new = None
        for old, ldm in UNET_TOP.items():
            if key.startswith(old + "."):
                new = ldm + key[len(old):]
        if new is None and (m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)):
            block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = 1 + block * (per_block + 1) + layer
            new = f"input_blocks.{index}.{0 if kind == 'resnets' else 1}.{_resnet(rest) if kind == 'resnets' else rest}"
        elif new is None and (m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)):
            new = f"input_blocks.{1 + int(m[1]) * (per_block + 1) + per_block}.0.op.{m[2]}"
        elif new is None and (m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)):
            kind, layer, rest = m[1], int(m[2]), m[3]
            new = (f"middle_block.{2 * layer}.{_resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}")
        elif new is None and (m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)):
            block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = block * (per_block + 1) + layer
            new = f"output_blocks.{index}.{0 if kind == 'resnets' else 1}.{_resnet(rest) if kind == 'resnets' else rest}"
        elif new is None and (m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)):
            block = int(m[1])
            new = f"output_blocks.{block * (per_block + 1) + per_block}.{2 if up_has_attention[block] else 1}.conv.{m[2]}"
        if new is None:
            raise KeyError(f"no LDM name for UNet key {key}")
        out[prefix + new] = value
    return out


def _resnet(rest: str) -> str:
    for diffusers_name, ldm_name in UNET_RESNET:
        if rest.startswith(diffusers_name + "."):
            return ldm_name + rest[len(diffusers_name):]
    return rest


VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def vae_to_ldm(state: dict, config: dict, prefix: str = "first_stage_model.") -> dict:
    blocks = len(config["up_block_types"])
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out")
        if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"decoder.up.{blocks - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            new = f"decoder.up.{blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
            rest = m[2]
            for diffusers_name, ldm_name in VAE_ATTENTION:
                if rest.startswith(diffusers_name + "."):
                    rest = ldm_name + rest[len(diffusers_name):]
            new = f"{m[1]}.mid.attn_1.{rest}"
            if value.ndim == 2:  # 1x1 convolutions in the original
                value = value[:, :, None, None]
        out[prefix + new] = value
    return out


def clip_to_ldm(state: dict, prefix: str) -> dict:
    """A transformers CLIP text encoder under `prefix` (cond_stage_model.transformer., conditioner.embedders.0.transformer.)."""
    return {prefix + (key if key.startswith("text_model.") else "text_model." + key): value for key, value in state.items()}


def open_clip_to_ldm(state: dict, prefix: str) -> dict:
    """A transformers CLIP text encoder in OpenCLIP's layout under `prefix` (cond_stage_model.model.,
    conditioner.embedders.1.model.): q/k/v stacked into in_proj, text_projection transposed."""
    import torch

    state = {key.removeprefix("text_model."): value for key, value in state.items()}
    out = {}
    names = {"embeddings.token_embedding.weight": "token_embedding.weight",
             "embeddings.position_embedding.weight": "positional_embedding",
             "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
    for key, value in state.items():
        if key in names:
            out[prefix + names[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif m := re.match(r"encoder\.layers\.(\d+)\.(.*)", key):
            layer, rest = m[1], m[2]
            if re.match(r"self_attn\.[qkv]_proj\.", rest):
                continue  # stacked below
            rest = (rest.replace("self_attn.out_proj", "attn.out_proj").replace("layer_norm1", "ln_1")
                    .replace("layer_norm2", "ln_2").replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj"))
            out[f"{prefix}transformer.resblocks.{layer}.{rest}"] = value
        else:
            raise KeyError(f"no OpenCLIP name for text encoder key {key}")
    layers = {int(m[1]) for key in state if (m := re.match(r"encoder\.layers\.(\d+)\.", key))}
    for layer in sorted(layers):
        for kind in ("weight", "bias"):
            parts = [state[f"encoder.layers.{layer}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
            out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(parts, dim=0)
    return out


def pipeline_to_ldm(pipe) -> dict:
    """A Stable Diffusion (1.x/2.x/XL, base, refiner or inpainting) pipeline's weights as one original-layout state dict."""
    sd = unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config)
    sd.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    text_encoder, text_encoder_2 = getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)
    if text_encoder_2 is not None:  # SDXL: CLIP-L (if any) then OpenCLIP bigG
        if text_encoder is not None:
            sd.update(clip_to_ldm(text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
            sd.update(open_clip_to_ldm(text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
        else:
            sd.update(open_clip_to_ldm(text_encoder_2.state_dict(), "conditioner.embedders.0.model."))
    elif text_encoder.config.hidden_act == "gelu":  # SD 2.x: OpenCLIP ViT-H
        sd.update(open_clip_to_ldm(text_encoder.state_dict(), "cond_stage_model.model."))
    else:
        sd.update(clip_to_ldm(text_encoder.state_dict(), "cond_stage_model.transformer."))
    return sd
