"""Tiny stand-ins of the files users keep for FLUX.1 and SD3.5 in the layouts ComfyUI and Stability ship them: a
FLUX transformer in Black Forest Labs' keys (diffusion_models/flux1-dev.safetensors), CLIP and T5 text encoders in
the transformers layout (text_encoders/clip_l.safetensors, t5xxl_fp16.safetensors), the VAE in the LDM layout
(vae/ae.safetensors), and Stability's SD3.5 single file (model.diffusion_model.* and first_stage_model.*, no text
encoders). Written from runner's tiny diffusers models by inverting diffusers' own converters (each checked once
against diffusers' forward converter: forward(reverse(weights)) == weights, key for key and bit for bit).

diffusers 0.42's FLUX converter hard-codes FLUX.1's width (3072) where it splits the fused projections, so it cannot
read a tiny-width file; `flux_width` runs that same function with the tiny model's width for the test's duration (a
patch of diffusers' converter table, not of runner: real FLUX files are 3072 wide).
"""

from __future__ import annotations

import contextlib
import inspect
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _load_component(folder: Path, sub: str) -> dict[str, torch.Tensor]:
    d = Path(folder) / sub
    for name in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
        if (d / name).is_file():
            return load_file(str(d / name))
    raise FileNotFoundError(f"no safetensors weights in {d}")


def _config(folder: Path, sub: str) -> dict:
    return json.loads((Path(folder) / sub / "config.json").read_text())


def _save(sd: dict[str, torch.Tensor], path: Path, dtype: torch.dtype | None = None, metadata: dict | None = None):
    """Deterministic write: contiguous, unshared tensors (safetensors refuses shared storage), optional cast."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, v in sd.items():
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    save_file(out, str(path), metadata=metadata or {"format": "pt"})
    return path


def _swap_halves(w: torch.Tensor) -> torch.Tensor:
    """diffusers' AdaLayerNormContinuous is (scale, shift); BFL / SAI final layers are (shift, scale). Self-inverse."""
    a, b = w.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def flux_transformer_to_bfl(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """FluxTransformer2DModel state dict -> Black Forest Labs' flux1-dev.safetensors keys (inverse of diffusers'
    convert_flux_transformer_checkpoint_to_diffusers). prefix="model.diffusion_model." gives the all-in-one layout."""
    sd = dict(sd)
    out: dict[str, torch.Tensor] = {}

    def mv(src: str, dst: str):
        out[prefix + dst] = sd.pop(src)

    for a, b in (("timestep_embedder", "time_in"), ("text_embedder", "vector_in"), ("guidance_embedder", "guidance_in")):
        if f"time_text_embed.{a}.linear_1.weight" not in sd:
            continue  # schnell: no guidance embedder, and BFL's file has no guidance_in.* then
        for i, layer in ((1, "in_layer"), (2, "out_layer")):
            for p in ("weight", "bias"):
                mv(f"time_text_embed.{a}.linear_{i}.{p}", f"{b}.{layer}.{p}")
    for p in ("weight", "bias"):
        mv(f"context_embedder.{p}", f"txt_in.{p}")
        mv(f"x_embedder.{p}", f"img_in.{p}")

    n_double = len({k.split(".")[1] for k in sd if k.startswith("transformer_blocks.")})
    n_single = len({k.split(".")[1] for k in sd if k.startswith("single_transformer_blocks.")})
    for i in range(n_double):
        s, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for p in ("weight", "bias"):
            mv(f"{s}norm1.linear.{p}", f"{d}img_mod.lin.{p}")
            mv(f"{s}norm1_context.linear.{p}", f"{d}txt_mod.lin.{p}")
            out[f"{prefix}{d}img_attn.qkv.{p}"] = torch.cat([sd.pop(f"{s}attn.to_{x}.{p}") for x in "qkv"])
            out[f"{prefix}{d}txt_attn.qkv.{p}"] = torch.cat([sd.pop(f"{s}attn.add_{x}_proj.{p}") for x in "qkv"])
            mv(f"{s}ff.net.0.proj.{p}", f"{d}img_mlp.0.{p}")
            mv(f"{s}ff.net.2.{p}", f"{d}img_mlp.2.{p}")
            mv(f"{s}ff_context.net.0.proj.{p}", f"{d}txt_mlp.0.{p}")
            mv(f"{s}ff_context.net.2.{p}", f"{d}txt_mlp.2.{p}")
            mv(f"{s}attn.to_out.0.{p}", f"{d}img_attn.proj.{p}")
            mv(f"{s}attn.to_add_out.{p}", f"{d}txt_attn.proj.{p}")
        mv(f"{s}attn.norm_q.weight", f"{d}img_attn.norm.query_norm.scale")
        mv(f"{s}attn.norm_k.weight", f"{d}img_attn.norm.key_norm.scale")
        mv(f"{s}attn.norm_added_q.weight", f"{d}txt_attn.norm.query_norm.scale")
        mv(f"{s}attn.norm_added_k.weight", f"{d}txt_attn.norm.key_norm.scale")
    for i in range(n_single):
        s, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for p in ("weight", "bias"):
            mv(f"{s}norm.linear.{p}", f"{d}modulation.lin.{p}")
            out[f"{prefix}{d}linear1.{p}"] = torch.cat(
                [sd.pop(f"{s}attn.to_{x}.{p}") for x in "qkv"] + [sd.pop(f"{s}proj_mlp.{p}")])
            mv(f"{s}proj_out.{p}", f"{d}linear2.{p}")
        mv(f"{s}attn.norm_q.weight", f"{d}norm.query_norm.scale")
        mv(f"{s}attn.norm_k.weight", f"{d}norm.key_norm.scale")
    for p in ("weight", "bias"):
        mv(f"proj_out.{p}", f"final_layer.linear.{p}")
        out[f"{prefix}final_layer.adaLN_modulation.1.{p}"] = _swap_halves(sd.pop(f"norm_out.linear.{p}"))
    if sd:
        raise ValueError(f"unmapped FLUX keys: {sorted(sd)[:10]}")
    return out


def vae_to_ldm(sd: dict[str, torch.Tensor], config: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """AutoencoderKL state dict -> LDM / BFL AutoEncoder keys (ae.safetensors; with prefix "first_stage_model." the
    VAE inside SD / SD3 single files). Attention q/k/v/proj_out become 1x1 conv weights ([C, C, 1, 1]) as in the
    originals. Inverse of diffusers' convert_ldm_vae_checkpoint."""
    sd = dict(sd)
    out: dict[str, torch.Tensor] = {}
    n_up = len(config["up_block_types"])

    def resnet(src: str, dst: str):
        for k in [k for k in sd if k.startswith(src + ".")]:
            rest = k[len(src) + 1:].replace("conv_shortcut", "nin_shortcut")
            out[f"{prefix}{dst}.{rest}"] = sd.pop(k)

    for part in ("encoder", "decoder"):
        for p in ("weight", "bias"):
            out[f"{prefix}{part}.conv_in.{p}"] = sd.pop(f"{part}.conv_in.{p}")
            out[f"{prefix}{part}.conv_out.{p}"] = sd.pop(f"{part}.conv_out.{p}")
            out[f"{prefix}{part}.norm_out.{p}"] = sd.pop(f"{part}.conv_norm_out.{p}")
        for j in range(2):
            resnet(f"{part}.mid_block.resnets.{j}", f"{part}.mid.block_{j + 1}")
        a = f"{part}.mid_block.attentions.0."
        for src, dst in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            for p in ("weight", "bias"):
                t = sd.pop(f"{a}{src}.{p}")
                if p == "weight" and dst != "norm":
                    t = t[:, :, None, None]
                out[f"{prefix}{part}.mid.attn_1.{dst}.{p}"] = t
    for k in [k for k in sd if k.startswith("encoder.down_blocks.")]:
        if k not in sd:
            continue
        i = int(k.split(".")[2])
        for j in {int(x.split(".")[4]) for x in sd if x.startswith(f"encoder.down_blocks.{i}.resnets.")}:
            resnet(f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}")
        for p in ("weight", "bias"):
            if f"encoder.down_blocks.{i}.downsamplers.0.conv.{p}" in sd:
                out[f"{prefix}encoder.down.{i}.downsample.conv.{p}"] = sd.pop(
                    f"encoder.down_blocks.{i}.downsamplers.0.conv.{p}")
    for k in [k for k in sd if k.startswith("decoder.up_blocks.")]:
        if k not in sd:
            continue
        i = int(k.split(".")[2])
        b = n_up - 1 - i  # LDM numbers decoder up blocks from the lowest resolution
        for j in {int(x.split(".")[4]) for x in sd if x.startswith(f"decoder.up_blocks.{i}.resnets.")}:
            resnet(f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{b}.block.{j}")
        for p in ("weight", "bias"):
            if f"decoder.up_blocks.{i}.upsamplers.0.conv.{p}" in sd:
                out[f"{prefix}decoder.up.{b}.upsample.conv.{p}"] = sd.pop(f"decoder.up_blocks.{i}.upsamplers.0.conv.{p}")
    for k in ("quant_conv.weight", "quant_conv.bias", "post_quant_conv.weight", "post_quant_conv.bias"):
        if k in sd:
            out[prefix + k] = sd.pop(k)
    if sd:
        raise ValueError(f"unmapped VAE keys: {sorted(sd)[:10]}")
    return out


def clip_to_transformers_layout(sd: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """CLIP text model state dict -> the classic transformers layout (text_model.*, text_projection.weight), which is
    what clip_l.safetensors / clip_g.safetensors hold. transformers >= 5.6 saves CLIPTextModel flattened (no
    text_model. prefix); CLIPTextModelWithProjection still has it."""
    out = {}
    for k, v in sd.items():
        if not (k.startswith("text_model.") or k.startswith("text_projection.")):
            k = "text_model." + k
        out[prefix + k] = v
    return out


def t5_to_transformers_layout(sd: dict[str, torch.Tensor], prefix: str = "",
                              include_embed_tokens: bool = False) -> dict[str, torch.Tensor]:
    """T5EncoderModel state dict -> t5xxl_fp16.safetensors keys (shared.weight, encoder.block.*,
    encoder.final_layer_norm.weight). The tied encoder.embed_tokens.weight is left out by default, as
    save_pretrained does; Stability's single files carry it as a second copy (A1111 and stable-diffusion.cpp key on
    text_encoders.t5xxl.transformer.encoder.embed_tokens.weight), and diffusers 0.42 + transformers 5 need it there:
    without it T5's embed_tokens stays on the meta device (see load_sd3_single_file)."""
    out = {prefix + k: v for k, v in sd.items() if k != "encoder.embed_tokens.weight"}
    if include_embed_tokens:
        out[prefix + "encoder.embed_tokens.weight"] = sd["shared.weight"]
    return out


def sd3_transformer_to_sai(sd: dict[str, torch.Tensor], prefix: str = "model.diffusion_model.") -> dict[str, torch.Tensor]:
    """SD3Transformer2DModel state dict -> Stability's MMDiT keys (inverse of convert_sd3_transformer_checkpoint_to_
    diffusers): joint_blocks.N.{x_block,context_block}.*, x_embedder, t_embedder, y_embedder, final_layer. Handles
    SD3.5's qk-norm (ln_q/ln_k) and SD3.5-medium's dual attention (attn2); the last block's context branch is
    pre-only (no attn.proj, no mlp, 2-way adaLN in (shift, scale) order)."""
    sd = dict(sd)
    out: dict[str, torch.Tensor] = {}

    def mv(src, dst, f=None):
        t = sd.pop(src)
        out[prefix + dst] = f(t) if f else t

    mv("pos_embed.pos_embed", "pos_embed")
    for p in ("weight", "bias"):
        mv(f"pos_embed.proj.{p}", f"x_embedder.proj.{p}")
        mv(f"time_text_embed.timestep_embedder.linear_1.{p}", f"t_embedder.mlp.0.{p}")
        mv(f"time_text_embed.timestep_embedder.linear_2.{p}", f"t_embedder.mlp.2.{p}")
        mv(f"context_embedder.{p}", f"context_embedder.{p}")
        mv(f"time_text_embed.text_embedder.linear_1.{p}", f"y_embedder.mlp.0.{p}")
        mv(f"time_text_embed.text_embedder.linear_2.{p}", f"y_embedder.mlp.2.{p}")
    n = len({k.split(".")[1] for k in sd if k.startswith("transformer_blocks.")})
    for i in range(n):
        s, x, c = f"transformer_blocks.{i}.", f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block."
        last = i == n - 1
        for p in ("weight", "bias"):
            out[f"{prefix}{x}attn.qkv.{p}"] = torch.cat([sd.pop(f"{s}attn.to_{q}.{p}") for q in "qkv"])
            out[f"{prefix}{c}attn.qkv.{p}"] = torch.cat([sd.pop(f"{s}attn.add_{q}_proj.{p}") for q in "qkv"])
            mv(f"{s}attn.to_out.0.{p}", f"{x}attn.proj.{p}")
            mv(f"{s}norm1.linear.{p}", f"{x}adaLN_modulation.1.{p}")
            mv(f"{s}norm1_context.linear.{p}", f"{c}adaLN_modulation.1.{p}", _swap_halves if last else None)
            mv(f"{s}ff.net.0.proj.{p}", f"{x}mlp.fc1.{p}")
            mv(f"{s}ff.net.2.{p}", f"{x}mlp.fc2.{p}")
            if not last:
                mv(f"{s}attn.to_add_out.{p}", f"{c}attn.proj.{p}")
                mv(f"{s}ff_context.net.0.proj.{p}", f"{c}mlp.fc1.{p}")
                mv(f"{s}ff_context.net.2.{p}", f"{c}mlp.fc2.{p}")
            if f"{s}attn2.to_q.{p}" in sd:
                out[f"{prefix}{x}attn2.qkv.{p}"] = torch.cat([sd.pop(f"{s}attn2.to_{q}.{p}") for q in "qkv"])
                mv(f"{s}attn2.to_out.0.{p}", f"{x}attn2.proj.{p}")
        for src, dst in (("attn.norm_q", f"{x}attn.ln_q"), ("attn.norm_k", f"{x}attn.ln_k"),
                         ("attn.norm_added_q", f"{c}attn.ln_q"), ("attn.norm_added_k", f"{c}attn.ln_k"),
                         ("attn2.norm_q", f"{x}attn2.ln_q"), ("attn2.norm_k", f"{x}attn2.ln_k")):
            if f"{s}{src}.weight" in sd:
                mv(f"{s}{src}.weight", f"{dst}.weight")
    for p in ("weight", "bias"):
        mv(f"proj_out.{p}", f"final_layer.linear.{p}")
        mv(f"norm_out.linear.{p}", f"final_layer.adaLN_modulation.1.{p}", _swap_halves)
    if sd:
        raise ValueError(f"unmapped SD3 keys: {sorted(sd)[:10]}")
    return out


# ---------------------------------------------------------------------------------------------------------------
# diffusers' forward FLUX converter with the model width taken from the config
# ---------------------------------------------------------------------------------------------------------------

def _flux_converter_for_width(inner: int):
    from diffusers.loaders import single_file_utils as sfu

    fn = sfu.convert_flux_transformer_checkpoint_to_diffusers
    if inner == 3072:
        return fn
    src = inspect.getsource(fn)
    if "inner_dim = 3072" not in src:
        raise RuntimeError("diffusers' FLUX converter changed: re-check the inner_dim workaround")
    ns = dict(vars(sfu))
    exec(compile(src.replace("inner_dim = 3072", f"inner_dim = {inner}"), sfu.__file__, "exec"), ns)
    return ns[fn.__name__]



@contextlib.contextmanager
def flux_width(config: dict):
    """diffusers' FLUX single-file converter, run with the width of `config` (a FluxTransformer2DModel config)."""
    from diffusers.loaders import single_file_model as sfm

    entry = sfm.SINGLE_FILE_LOADABLE_CLASSES["FluxTransformer2DModel"]
    old = entry["checkpoint_mapping_fn"]
    entry["checkpoint_mapping_fn"] = _flux_converter_for_width(
        int(config["num_attention_heads"]) * int(config["attention_head_dim"]))
    try:
        yield
    finally:
        entry["checkpoint_mapping_fn"] = old


def write_flux_comfy_files(flux_folder: Path, out_dir: Path, dtypes: dict | None = None,
                           name: str = "flux1-dev.safetensors") -> dict[str, Path]:
    """Write the four files ComfyUI users keep for FLUX.1 from a tiny diffusers FluxPipeline folder:
    models/diffusion_models/<name>, models/text_encoders/{clip_l,t5xxl_fp16}.safetensors, models/vae/ae.safetensors.
    dtypes: optional {"transformer": torch.bfloat16, "text_encoder": torch.float16, ...} to mimic the real files
    (flux1-dev is bf16, clip_l / t5xxl_fp16 fp16, ae fp32); default keeps float32 so images stay byte-identical."""
    flux_folder, out_dir = Path(flux_folder), Path(out_dir)
    dtypes = dtypes or {}
    paths = {
        "transformer": out_dir / "models" / "diffusion_models" / name,
        "text_encoder": out_dir / "models" / "text_encoders" / "clip_l.safetensors",
        "text_encoder_2": out_dir / "models" / "text_encoders" / "t5xxl_fp16.safetensors",
        "vae": out_dir / "models" / "vae" / "ae.safetensors",
    }
    _save(flux_transformer_to_bfl(_load_component(flux_folder, "transformer")), paths["transformer"],
          dtypes.get("transformer"))
    _save(clip_to_transformers_layout(_load_component(flux_folder, "text_encoder")), paths["text_encoder"],
          dtypes.get("text_encoder"))
    _save(t5_to_transformers_layout(_load_component(flux_folder, "text_encoder_2")), paths["text_encoder_2"],
          dtypes.get("text_encoder_2"))
    _save(vae_to_ldm(_load_component(flux_folder, "vae"), _config(flux_folder, "vae")), paths["vae"],
          dtypes.get("vae"))
    return paths


def sd3_single_file_state_dict(sd3_folder: Path, include_text_encoders: bool = True,
                               include_t5: bool = True, t5_embed_tokens: bool = True) -> dict[str, torch.Tensor]:
    sd3_folder = Path(sd3_folder)
    sd = sd3_transformer_to_sai(_load_component(sd3_folder, "transformer"))
    sd.update(vae_to_ldm(_load_component(sd3_folder, "vae"), _config(sd3_folder, "vae"), prefix="first_stage_model."))
    if include_text_encoders:
        sd.update(clip_to_transformers_layout(_load_component(sd3_folder, "text_encoder"),
                                              prefix="text_encoders.clip_l.transformer."))
        sd.update(clip_to_transformers_layout(_load_component(sd3_folder, "text_encoder_2"),
                                              prefix="text_encoders.clip_g.transformer."))
        if include_t5:
            sd.update(t5_to_transformers_layout(_load_component(sd3_folder, "text_encoder_3"),
                                                prefix="text_encoders.t5xxl.transformer.",
                                                include_embed_tokens=t5_embed_tokens))
    return sd


def write_sd3_single_file(sd3_folder: Path, path: Path, include_text_encoders: bool = False,
                          include_t5: bool = True, dtype: torch.dtype | None = None,
                          t5_embed_tokens: bool = True) -> Path:
    """Stability's SD3 / SD3.5 single file. Default (include_text_encoders=False) = what sd3.5_medium.safetensors /
    sd3.5_large.safetensors contain: model.diffusion_model.* (MMDiT) + first_stage_model.* (VAE) only. With
    include_text_encoders=True adds text_encoders.clip_l/clip_g(/t5xxl).transformer.* like SD3-medium's
    sd3_medium_incl_clips[_t5xxlfp16].safetensors."""
    return _save(sd3_single_file_state_dict(sd3_folder, include_text_encoders, include_t5, t5_embed_tokens), path, dtype)


def write_sd3_text_encoder_files(sd3_folder: Path, out_dir: Path) -> dict[str, Path]:
    """models/text_encoders/{clip_l,clip_g,t5xxl_fp16}.safetensors as Stability / Comfy-Org ship them beside SD3.5."""
    out_dir = Path(out_dir) / "models" / "text_encoders"
    return {
        "text_encoder": _save(clip_to_transformers_layout(_load_component(sd3_folder, "text_encoder")),
                              out_dir / "sd3_clip_l.safetensors"),
        "text_encoder_2": _save(clip_to_transformers_layout(_load_component(sd3_folder, "text_encoder_2")),
                                out_dir / "sd3_clip_g.safetensors"),
        "text_encoder_3": _save(t5_to_transformers_layout(_load_component(sd3_folder, "text_encoder_3")),
                                out_dir / "sd3_t5xxl_fp16.safetensors"),
    }


# ---------------------------------------------------------------------------------------------------------------
# verification of the reverse converters against diffusers' forward converters
# ---------------------------------------------------------------------------------------------------------------


def write_flux_all_in_one(flux_folder: Path, path: Path, dtype: torch.dtype | None = None) -> Path:
    """ComfyUI's all-in-one FLUX checkpoint layout (models/checkpoints/flux1-dev-fp8.safetensors style, here
    unquantised): model.diffusion_model.* (BFL keys), vae.* (LDM VAE), text_encoders.clip_l.transformer.text_model.*,
    text_encoders.t5xxl.transformer.* (shared + encoder.embed_tokens)."""
    flux_folder = Path(flux_folder)
    sd = flux_transformer_to_bfl(_load_component(flux_folder, "transformer"), "model.diffusion_model.")
    sd.update(vae_to_ldm(_load_component(flux_folder, "vae"), _config(flux_folder, "vae"), prefix="vae."))
    sd.update(clip_to_transformers_layout(_load_component(flux_folder, "text_encoder"),
                                          prefix="text_encoders.clip_l.transformer."))
    sd.update(t5_to_transformers_layout(_load_component(flux_folder, "text_encoder_2"),
                                        prefix="text_encoders.t5xxl.transformer.", include_embed_tokens=True))
    return _save(sd, path, dtype)

