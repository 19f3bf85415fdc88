"""Tiny random models: ``tiny:NAME`` model sources that need no model hub.

A tiny model is a small, randomly initialised instance of a real architecture
(Stable Diffusion 1.5, SDXL base and refiner, SD3, FLUX.1, their ControlNets
and LoRAs, depth-to-image, Kandinsky 2.1, 2.2 (and its depth ControlNet) and 3,
DPT, Depth Anything, VitPose, RT-DETR), built here from the config dicts below
with fixed seeds and saved with ``save_pretrained`` as an ordinary
diffusers/transformers folder.  Every ``from_pretrained`` path, pipeline class
and AutoPipeline that accepts the real checkpoint accepts the tiny one.

They exist for tests, benchmarks of the runner's own overhead and offline
demos: a 64x64 image in 2 steps takes tens of milliseconds on a CPU.  The
outputs are noise; the code paths are real.

Building is deterministic: the same ``TINY_BUILDER_VERSION``, configs and
seeds give byte-identical files in any process and any folder, and the folder
name carries a hash of exactly those inputs (``tiny_identity``).  This module
imports torch, diffusers and transformers only inside the build functions, so
naming and hashing stay cheap.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import threading
from typing import Any

from ..core.atomic import staged_folder

TINY_BUILDER_VERSION = 1

# --------------------------------------------------------------------------
# Component configs (plain dicts: hashed by tiny_identity, passed to builders)
# --------------------------------------------------------------------------

# CLIP tokenizer without merges: the 256 byte-to-unicode characters, the same
# with "</w>", then the two specials. Every string tokenises without unknowns.
TOKENIZER = {"model_max_length": 77, "vocab": "bytes+bytes</w>+sot+eot", "merges": []}
_BOS, _EOS = 512, 513

CLIP_TEXT = {
    "vocab_size": 514, "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
    "num_hidden_layers": 2, "max_position_embeddings": 77,
    "bos_token_id": _BOS, "eos_token_id": _EOS, "pad_token_id": _EOS,
}
CLIP_TEXT_PROJ = {**CLIP_TEXT, "projection_dim": 32}
CLIP_VISION_PROJ = {
    "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
    "image_size": 32, "patch_size": 8, "projection_dim": 32,
}
CLIP_IMAGE_PROCESSOR = {
    "do_resize": True, "size": {"shortest_edge": 32}, "do_center_crop": True,
    "crop_size": {"height": 32, "width": 32}, "resample": 3, "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
}

# 4 blocks: latent scale factor 8, as in the real VAEs (ControlNet relies on it).
VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 64,
    "block_out_channels": [8, 16, 32, 32], "layers_per_block": 1, "norm_num_groups": 8,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
VAE_SDXL = {**VAE, "scaling_factor": 0.13025}

UNET_SD15 = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [32, 64], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 32, "attention_head_dim": 8,
}
UNET_SD15_INPAINT = {**UNET_SD15, "in_channels": 9}  # latents + mask + masked-image latents
UNET_SD2_DEPTH = {**UNET_SD15, "in_channels": 5, "use_linear_projection": True}  # latents + depth

UNET_SDXL = {
    **UNET_SD15, "attention_head_dim": [2, 4], "use_linear_projection": True,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
    "transformer_layers_per_block": [1, 2], "cross_attention_dim": 64,  # 32 + 32 (two text encoders)
    "projection_class_embeddings_input_dim": 80,  # 6 time ids * 8 + pooled 32
}
UNET_SDXL_REFINER = {
    **UNET_SDXL, "cross_attention_dim": 32,  # text_encoder_2 only
    "projection_class_embeddings_input_dim": 72,  # 5 time ids (with aesthetic score) * 8 + 32
}

UNET_X4 = {**UNET_SD15, "in_channels": 7, "num_class_embeds": 1000}  # class embedding = noise level
VAE_X4 = {**VAE, "block_out_channels": [8, 16, 32], "down_block_types": ["DownEncoderBlock2D"] * 3,
          "up_block_types": ["UpDecoderBlock2D"] * 3, "scaling_factor": 0.08333}
SCHED_X4_LOW_RES = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.0001, "beta_end": 0.02}
SCHED_SD = {  # Stable Diffusion 1.x/2.x training schedule
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
}
SCHED_SDXL = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "steps_offset": 1, "prediction_type": "epsilon", "timestep_spacing": "leading",
    "interpolation_type": "linear", "use_karras_sigmas": False,
}

# Depth estimators. DPT: ViT image 32, patch 8.
DPT = {
    "model_type": "dpt", "image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 4,
    "num_attention_heads": 4, "intermediate_size": 37, "backbone_out_indices": [0, 1, 2, 3],
    "neck_hidden_sizes": [8, 16, 32, 32], "fusion_hidden_size": 16,
}
DPT_PROCESSOR = {
    "do_resize": True, "size": {"height": 32, "width": 32}, "keep_aspect_ratio": False,
    "ensure_multiple_of": 1, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}
DEPTH_ANYTHING = {
    "model_type": "depth_anything", "patch_size": 14, "reassemble_hidden_size": 32,
    "neck_hidden_sizes": [8, 16, 32, 32], "fusion_hidden_size": 16, "head_hidden_size": 8,
    "backbone_config": {
        "model_type": "dinov2", "image_size": 28, "patch_size": 14, "hidden_size": 32,
        "num_hidden_layers": 4, "num_attention_heads": 4, "mlp_ratio": 1,
        "out_features": ["stage1", "stage2", "stage3", "stage4"], "reshape_hidden_states": False,
    },
}
DEPTH_ANYTHING_PROCESSOR = {
    "do_resize": True, "size": {"height": 28, "width": 28}, "keep_aspect_ratio": True,
    "ensure_multiple_of": 14, "resample": 3, "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
}

# Pose (detect_pose): VitPose (ViT backbone image 64x48 = height x width, patch 16, 17 COCO keypoint
# heatmaps of 16x12) and an RT-DETR person detector (ResNet "basic" backbone, 10 queries, COCO's first
# two labels so "person" is class 0 as in the real checkpoints). Both need neither timm nor torchvision.
VITPOSE = {
    "model_type": "vitpose", "num_labels": 17,
    "backbone_config": {
        "model_type": "vitpose_backbone", "image_size": [64, 48], "patch_size": [16, 16], "hidden_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 4, "mlp_ratio": 1, "out_indices": [2],
    },
}
VITPOSE_PROCESSOR = {
    "do_affine_transform": True, "size": {"height": 64, "width": 48}, "normalize_factor": 200.0,
    "do_rescale": True, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
}
RTDETR = {
    "model_type": "rt_detr", "id2label": {"0": "person", "1": "bicycle"}, "num_queries": 10, "num_denoising": 0,
    "backbone_config": {
        "model_type": "rt_detr_resnet", "embedding_size": 8, "hidden_sizes": [8, 16, 32, 32], "depths": [1, 1, 1, 1],
        "layer_type": "basic", "out_features": ["stage2", "stage3", "stage4"],
    },
    "encoder_in_channels": [16, 32, 32], "encoder_hidden_dim": 32, "encoder_ffn_dim": 32, "encoder_attention_heads": 2,
    "d_model": 32, "decoder_in_channels": [32, 32, 32], "decoder_ffn_dim": 32, "decoder_layers": 2,
    "decoder_attention_heads": 2, "decoder_n_points": 2,
}
RTDETR_PROCESSOR = {"do_resize": True, "size": {"height": 64, "width": 64}, "do_rescale": True, "do_normalize": False}

# ControlNet: from_unet copies the UNet's encoder; the zero convolutions are
# then re-initialised with small random weights so the control image
# visibly changes the output (a zero ControlNet would hide wiring bugs).
LORA = {"rank": 4, "alpha": 4, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"], "std": 0.05}
CONTROLNET = {"conditioning_embedding_out_channels": [16, 32, 96, 256], "zero_conv_std": 0.05}

# Kandinsky 2.2 prior: image embeddings of width 32 from CLIP text features.
PRIOR = {"num_attention_heads": 2, "attention_head_dim": 12, "embedding_dim": 32, "num_layers": 1}
SCHED_PRIOR = {
    "variance_type": "fixed_small_log", "prediction_type": "sample", "num_train_timesteps": 1000,
    "clip_sample": True, "clip_sample_range": 10.0,
}
# Kandinsky 2.2 decoder: image-embedding conditioned UNet (mean + variance
# out) and a MoVQ (VQModel with spatial norm, whose GroupNorm needs 32 groups).
UNET_KANDINSKY = {
    "sample_size": 8, "in_channels": 4, "out_channels": 8, "layers_per_block": 1,
    "block_out_channels": [32, 64], "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
    "up_block_types": ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
    "mid_block_type": "UNetMidBlock2DSimpleCrossAttn", "addition_embed_type": "image",
    "encoder_hid_dim": 32, "encoder_hid_dim_type": "image_proj", "cross_attention_dim": 32,
    "attention_head_dim": 4, "resnet_time_scale_shift": "scale_shift", "class_embed_type": None,
}
UNET_KANDINSKY_INPAINT = {**UNET_KANDINSKY, "in_channels": 9}
MOVQ = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "vq_embed_dim": 4, "num_vq_embeddings": 12,
    "block_out_channels": [32, 32, 32, 32], "layers_per_block": 1, "norm_num_groups": 8, "norm_type": "spatial",
    "down_block_types": ["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
    "up_block_types": ["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
}
SCHED_KANDINSKY = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "linear",
    "clip_sample": False, "steps_offset": 1, "prediction_type": "epsilon",
}

# Kandinsky 2.2 depth ControlNet decoder: the hint (a depth map) goes through diffusers' fixed ImageHintTimeEmbedding
# (to 4 channels at 1/8 size) and joins the latents: 4 + 4 input channels.
UNET_KANDINSKY_HINT = {**UNET_KANDINSKY, "in_channels": 8, "addition_embed_type": "image_hint"}
# Kandinsky 2.1 decoder: a UNet conditioned on the text (a multilingual CLIP: XLM-RoBERTa + projection) and the
# prior's image embedding; DDIM, as the real kandinsky-2-1 ships.
UNET_KANDINSKY21 = {**UNET_KANDINSKY, "addition_embed_type": "text_image", "encoder_hid_dim_type": "text_image_proj"}
UNET_KANDINSKY21_INPAINT = {**UNET_KANDINSKY21, "in_channels": 9}
# XLM-R tokenizer, built offline: a Unigram model over <s>, <pad>, </s>, <unk>, "\u2581", a few words, printable
# ASCII alone and after "\u2581", then <mask> (other characters become <unk>).
XLMR_TOKENIZER = {"model_max_length": 77, "vocab": "specials+words+ascii+word-starts+mask",
                  "words": ["the", "cat", "dog", "red", "photo", "of", "4k", "robot", "horse", "painting"]}
MCLIP = {  # diffusers' MultilingualCLIP (an XLM-RoBERTa whose pooled output is projected to the prior's width)
    "transformerDimSize": 32, "imageDimSize": 32, "hidden_size": 32, "intermediate_size": 37,
    "num_attention_heads": 4, "num_hidden_layers": 2, "max_position_embeddings": 80, "type_vocab_size": 1,
    "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "vocab_size": 176,
}
SCHED_KANDINSKY21 = {
    "num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012,
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
}
# Kandinsky 3: Kandinsky3UNet reading a T5 encoder's states (Flan-UL2's in the real model; tiny:sd3's T5 here), the
# MoVQ above (Kandinsky 3 hard-codes its factor 8), DDPM as diffusers' Kandinsky 3 tests set it.
UNET_KANDINSKY3 = {
    "in_channels": 4, "time_embedding_dim": 4, "groups": 2, "attention_head_dim": 4, "layers_per_block": 2,
    "block_out_channels": [32, 64], "cross_attention_dim": 4, "encoder_hid_dim": 64,
}
SCHED_KANDINSKY3 = {"beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1, "beta_schedule": "squaredcos_cap_v2",
                    "clip_sample": True, "thresholding": False}


# --- Stable Diffusion 3 / 3.5 and FLUX.1: transformer denoisers, T5 text encoders, 16-channel latents ---------
# T5 tokenizer, built offline: a Unigram model over <pad>=0, </s>=1, <unk>=2, "▁", printable ASCII, Latin-1 letters
# and "▁a".."▁z" (non-Latin text and emoji become <unk>).
T5_TOKENIZER = {"model_max_length": 512, "extra_ids": 0, "vocab": "pad+eos+unk+ascii+latin1+word-starts"}
# T5 v1.1-style encoder (gated-gelu like T5-XXL). 64 wide: SD3 pads the two CLIPs' joined states (32 + 32) up to it.
T5_ENCODER = {
    "model_type": "t5", "vocab_size": 256, "d_model": 64, "d_kv": 16, "d_ff": 64, "num_layers": 2, "num_heads": 4,
    "relative_attention_num_buckets": 8, "relative_attention_max_distance": 32, "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0, "tie_word_embeddings": False,
}
VAE16 = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 16, "sample_size": 64,
    "block_out_channels": [8, 16, 32, 32], "layers_per_block": 1, "norm_num_groups": 8,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_quant_conv": False, "use_post_quant_conv": False,
}
VAE_SD3 = {**VAE16, "shift_factor": 0.0609, "scaling_factor": 1.5035}  # the real SD3 / SD3.5 VAE's
VAE_FLUX = {**VAE16, "shift_factor": 0.1159, "scaling_factor": 0.3611}  # the real FLUX.1 VAE's
# MMDiT: inner width (4 heads x 8) = caption_projection_dim; joint_attention_dim = T5 width; pooled = 32 + 32
# (both CLIP projections); sample_size 8 x VAE factor 8 = 64 px by default.
SD3_TRANSFORMER = {
    "sample_size": 8, "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 2,
    "attention_head_dim": 8, "num_attention_heads": 4, "joint_attention_dim": 64,
    "caption_projection_dim": 32, "pooled_projection_dim": 64, "pos_embed_max_size": 32,
}
SCHED_SD3 = {"num_train_timesteps": 1000, "shift": 3.0}  # FlowMatchEulerDiscreteScheduler, as SD3's
# SD3 ControlNet (InstantX layout): the transformer's widths, one block; its zero-initialised projections are
# drawn at random so that the condition visibly acts.
SD3_CONTROLNET = {"config": {**SD3_TRANSFORMER, "num_layers": 1, "extra_conditioning_channels": 0},
                  "randomise": ["controlnet_blocks", "pos_embed_input"], "std": 0.05}
# FLUX.1: latents packed 2x2 (in_channels 16 x 4); inner width 2 x 16; sum(axes_dims_rope) = head dim 16;
# joint_attention_dim = T5 width; pooled = the CLIP width. dev embeds the distilled guidance, schnell does not.
FLUX_TRANSFORMER = {
    "patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 2, "attention_head_dim": 16,
    "num_attention_heads": 2, "joint_attention_dim": 64, "pooled_projection_dim": 32, "guidance_embeds": True,
    "axes_dims_rope": [4, 4, 8],
}
FLUX_SCHNELL_TRANSFORMER = {**FLUX_TRANSFORMER, "guidance_embeds": False}
SCHED_FLUX = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
              "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}  # FLUX.1-dev's
SCHED_FLUX_SCHNELL = {**SCHED_FLUX, "shift": 1.0, "use_dynamic_shifting": False}
FLUX_CONTROLNET = {"config": {**FLUX_TRANSFORMER, "num_layers": 1, "num_single_layers": 1},
                   "randomise": ["controlnet_blocks", "controlnet_single_blocks", "controlnet_x_embedder"],
                   "std": 0.05}
# LoRAs on the transformers, with the target modules diffusers' DreamBooth LoRA scripts use by default.
LORA_SD3 = {"rank": 4, "alpha": 4, "std": 0.05, "denoiser": "SD3Transformer2DModel", "config": SD3_TRANSFORMER,
            "denoiser_seed": 100, "pipeline": "StableDiffusion3Pipeline", "argument": "transformer_lora_layers",
            "target_modules": ["attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out",
                               "attn.to_k", "attn.to_out.0", "attn.to_q", "attn.to_v"]}
LORA_FLUX = {"rank": 4, "alpha": 4, "std": 0.05, "denoiser": "FluxTransformer2DModel", "config": FLUX_TRANSFORMER,
             "denoiser_seed": 200, "pipeline": "FluxPipeline", "argument": "transformer_lora_layers",
             "target_modules": ["attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj",
                                "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2",
                                "ff_context.net.0.proj", "ff_context.net.2"]}
# Textual-inversion embeddings, two vectors each, as A1111 saves them for SD 1.x (emb_params) and as SDXL ones are
# (one set of vectors per text encoder: clip_l for the first, clip_g for the second), saved as learned_embeds.safetensors.
# IP-Adapters for tiny:sd15's and tiny:sdxl's UNets in the original (h94/IP-Adapter) layout: image_proj.proj maps
# the image encoder's projection (32) to 4 tokens of the UNet's cross-attention width, ip_adapter.{1,3,..} are the
# to_k_ip / to_v_ip of each cross-attention processor, in diffusers' attn_processors order. Their image encoder is a
# tiny CLIPVisionModelWithProjection saved under image_encoder/, as the real repository keeps it.
IP_ADAPTER_SD15 = {"unet": UNET_SD15, "tokens": 4, "std": 0.1}
IP_ADAPTER_SDXL = {"unet": UNET_SDXL, "tokens": 4, "std": 0.1}
# FLUX's (XLabs-AI/flux-ip-adapter's layout): ip_adapter_proj_model (4 tokens of the transformer's joint attention
# width) and each double block's ip_adapter_double_stream_k/v_proj, biased, as diffusers' FluxIPAdapterMixin reads it
IP_ADAPTER_FLUX = {"transformer": FLUX_TRANSFORMER, "tokens": 4, "std": 0.1}
# A T2I-Adapter: full_adapter_xl at downscale 16 gives the [32, 4, 4] and [64, 4, 4] features both tiny UNets add to
# their two down blocks at 64 px (sides a multiple of 16); redrawn at std 0.1 so that it changes the image.
T2I_ADAPTER = {"config": {"in_channels": 3, "channels": [32, 64], "num_res_blocks": 1, "downscale_factor": 16,
                          "adapter_type": "full_adapter_xl"}, "std": 0.1}
EMBEDDING_SD15 = {"vectors": 2, "std": 0.5, "keys": {"emb_params": 32}}
EMBEDDING_SDXL = {"vectors": 2, "std": 0.5, "keys": {"clip_l": 32, "clip_g": 32}}
# A LoRA for tiny:sdxl's UNet, saved as SDXL LoRAs are.
LORA_SDXL = {"rank": 4, "alpha": 4, "std": 0.05, "denoiser": "UNet2DConditionModel", "config": UNET_SDXL,
             "denoiser_seed": 10, "pipeline": "StableDiffusionXLPipeline", "argument": "unet_lora_layers",
             "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}


# --------------------------------------------------------------------------
# Model specs. A spec maps sub-folders ("" = the model folder itself) to
# [pipeline class or None, {component: [class, config, seed]}, pipeline kwargs];
# with None the components are saved side by side (a single model folder).
# Components with the same class, config and seed are byte-identical across
# models, so they can be shared (e.g. the SDXL refiner's VAE and text_encoder_2).
# --------------------------------------------------------------------------

def _c(cls: str, config: dict, seed: int | None = None) -> list:
    return [cls, config, seed]


def _pipe(cls: str | None, parts: dict, **kwargs) -> list:
    return [cls, parts, kwargs]


def _single(kind: str, folder: list) -> dict:
    return {"kind": kind, "folders": {"": folder}}


_TOK = _c("CLIPTokenizer", TOKENIZER)
_SD15_PARTS = {"vae": _c("AutoencoderKL", VAE, 1), "text_encoder": _c("CLIPTextModel", CLIP_TEXT, 2),
               "tokenizer": _TOK, "scheduler": _c("DDIMScheduler", SCHED_SD)}
_NO_SAFETY = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
_SDXL_SHARED = {"vae": _c("AutoencoderKL", VAE_SDXL, 11),
                "text_encoder_2": _c("CLIPTextModelWithProjection", CLIP_TEXT_PROJ, 13),
                "tokenizer_2": _TOK, "scheduler": _c("EulerDiscreteScheduler", SCHED_SDXL)}
_K_PRIOR = _pipe("KandinskyV22PriorPipeline", {
    "prior": _c("PriorTransformer", PRIOR, 40),
    "image_encoder": _c("CLIPVisionModelWithProjection", CLIP_VISION_PROJ, 41),
    "text_encoder": _c("CLIPTextModelWithProjection", CLIP_TEXT_PROJ, 42), "tokenizer": _TOK,
    "scheduler": _c("UnCLIPScheduler", SCHED_PRIOR), "image_processor": _c("CLIPImageProcessor", CLIP_IMAGE_PROCESSOR)})


def _k_decoder(pipeline: str, unet: dict, seed: int) -> list:
    return _pipe(pipeline, {"unet": _c("UNet2DConditionModel", unet, seed), "movq": _c("VQModel", MOVQ, 44),
                            "scheduler": _c("DDPMScheduler", SCHED_KANDINSKY)})



_K21_PRIOR = _pipe("KandinskyPriorPipeline", {
    "prior": _c("PriorTransformer", PRIOR, 60),
    "image_encoder": _c("CLIPVisionModelWithProjection", CLIP_VISION_PROJ, 61),
    "text_encoder": _c("CLIPTextModelWithProjection", CLIP_TEXT_PROJ, 62), "tokenizer": _TOK,
    "scheduler": _c("UnCLIPScheduler", SCHED_PRIOR), "image_processor": _c("CLIPImageProcessor", CLIP_IMAGE_PROCESSOR)})


def _k21_decoder(pipeline: str, unet: dict, seed: int) -> list:
    return _pipe(pipeline, {"text_encoder": _c("MultilingualCLIP", MCLIP, 63), "tokenizer": _c("XLMRobertaTokenizer", XLMR_TOKENIZER),
                            "unet": _c("UNet2DConditionModel", unet, seed), "movq": _c("VQModel", MOVQ, 65),
                            "scheduler": _c("DDIMScheduler", SCHED_KANDINSKY21)})

_SPECS: dict[str, dict[str, Any]] = {
    "sd15": _single("pipeline", _pipe(
        "StableDiffusionPipeline",
        {"unet": _c("UNet2DConditionModel", UNET_SD15, 0), **_SD15_PARTS}, **_NO_SAFETY)),
    "sd15-inpaint": _single("pipeline", _pipe(
        "StableDiffusionInpaintPipeline",
        {"unet": _c("UNet2DConditionModel", UNET_SD15_INPAINT, 3), **_SD15_PARTS}, **_NO_SAFETY)),
    "sd2-depth": _single("pipeline", _pipe(
        "StableDiffusionDepth2ImgPipeline",
        {"unet": _c("UNet2DConditionModel", UNET_SD2_DEPTH, 4), **_SD15_PARTS,
         "depth_estimator": _c("DPTForDepthEstimation", DPT, 31),
         "feature_extractor": _c("DPTImageProcessor", DPT_PROCESSOR)})),
    "controlnet-sd15": _single("controlnet", _pipe(
        None, {"controlnet": _c("ControlNetModel", {**CONTROLNET, "unet": UNET_SD15, "unet_seed": 0}, 5)})),
    "sdxl": _single("pipeline", _pipe(
        "StableDiffusionXLPipeline",
        {"unet": _c("UNet2DConditionModel", UNET_SDXL, 10), "text_encoder": _c("CLIPTextModel", CLIP_TEXT, 12),
         "tokenizer": _TOK, **_SDXL_SHARED},
        force_zeros_for_empty_prompt=True)),
    "sdxl-refiner": _single("pipeline", _pipe(
        "StableDiffusionXLImg2ImgPipeline",
        {"unet": _c("UNet2DConditionModel", UNET_SDXL_REFINER, 14), **_SDXL_SHARED},
        text_encoder=None, tokenizer=None, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)),
    "controlnet-sdxl": _single("controlnet", _pipe(
        None, {"controlnet": _c("ControlNetModel", {**CONTROLNET, "unet": UNET_SDXL, "unet_seed": 10}, 15)})),
    "kandinsky22": {"kind": "pipeline", "folders": {
        "prior": _K_PRIOR, "decoder": _k_decoder("KandinskyV22Pipeline", UNET_KANDINSKY, 43)}},
    # The inpaint decoder needs a 9-channel UNet (the real one is a separate checkpoint too).
    "kandinsky22-inpaint": {"kind": "pipeline", "folders": {
        "prior": _K_PRIOR, "decoder": _k_decoder("KandinskyV22InpaintPipeline", UNET_KANDINSKY_INPAINT, 45)}},
    # Kandinsky 2.2's depth ControlNet is a whole decoder (kandinsky-community/kandinsky-2-2-controlnet-depth):
    # it goes in a node's controlnet:, beside a Kandinsky 2.2 model whose prior it uses.
    "controlnet-kandinsky22": _single("controlnet", _k_decoder("KandinskyV22ControlnetPipeline", UNET_KANDINSKY_HINT, 70)),
    "kandinsky21": {"kind": "pipeline", "folders": {
        "prior": _K21_PRIOR, "decoder": _k21_decoder("KandinskyPipeline", UNET_KANDINSKY21, 64)}},
    "kandinsky21-inpaint": {"kind": "pipeline", "folders": {
        "prior": _K21_PRIOR, "decoder": _k21_decoder("KandinskyInpaintPipeline", UNET_KANDINSKY21_INPAINT, 66)}},
    "kandinsky3": _single("pipeline", _pipe("Kandinsky3Pipeline", {
        "unet": _c("Kandinsky3UNet", UNET_KANDINSKY3, 80), "text_encoder": _c("T5EncoderModel", T5_ENCODER, 81),
        "tokenizer": _c("T5Tokenizer", T5_TOKENIZER), "movq": _c("VQModel", MOVQ, 82),
        "scheduler": _c("DDPMScheduler", SCHED_KANDINSKY3)})),
    # A LoRA for tiny:sd15's UNet (attention projections), saved as diffusers' pytorch_lora_weights.safetensors.
    "lora-sd15": _single("lora", _pipe(
        None, {"lora": _c("LoRA", {**LORA, "unet": UNET_SD15, "unet_seed": 0}, 7)})),
    # Stable Diffusion x4 upscaler: the low-res image joins the latents (7 input channels), a 3-block VAE (x4).
    "sd-x4-upscaler": _single("pipeline", _pipe(
        "StableDiffusionUpscalePipeline",
        {"unet": _c("UNet2DConditionModel", UNET_X4, 8), "vae": _c("AutoencoderKL", VAE_X4, 9),
         "text_encoder": _c("CLIPTextModel", CLIP_TEXT, 2), "tokenizer": _TOK,
         "scheduler": _c("DDIMScheduler", SCHED_SD), "low_res_scheduler": _c("DDPMScheduler", SCHED_X4_LOW_RES)},
        max_noise_level=350)),
    "sd3": _single("pipeline", _pipe("StableDiffusion3Pipeline", {
        "transformer": _c("SD3Transformer2DModel", SD3_TRANSFORMER, 100),
        "scheduler": _c("FlowMatchEulerDiscreteScheduler", SCHED_SD3), "vae": _c("AutoencoderKL", VAE_SD3, 101),
        "text_encoder": _c("CLIPTextModelWithProjection", CLIP_TEXT_PROJ, 102), "tokenizer": _TOK,
        "text_encoder_2": _c("CLIPTextModelWithProjection", CLIP_TEXT_PROJ, 103), "tokenizer_2": _TOK,
        "text_encoder_3": _c("T5EncoderModel", T5_ENCODER, 104), "tokenizer_3": _c("T5Tokenizer", T5_TOKENIZER)})),
    "controlnet-sd3": _single("controlnet", _pipe(None, {"controlnet": _c("SD3ControlNetModel", SD3_CONTROLNET, 105)})),
    "lora-sd3": _single("lora", _pipe(None, {"lora": _c("LoRA", LORA_SD3, 106)})),
    "flux": _single("pipeline", _pipe("FluxPipeline", {
        "transformer": _c("FluxTransformer2DModel", FLUX_TRANSFORMER, 200),
        "scheduler": _c("FlowMatchEulerDiscreteScheduler", SCHED_FLUX), "vae": _c("AutoencoderKL", VAE_FLUX, 201),
        "text_encoder": _c("CLIPTextModel", CLIP_TEXT, 202), "tokenizer": _TOK,
        "text_encoder_2": _c("T5EncoderModel", T5_ENCODER, 203), "tokenizer_2": _c("T5Tokenizer", T5_TOKENIZER)})),
    "flux-schnell": _single("pipeline", _pipe("FluxPipeline", {
        "transformer": _c("FluxTransformer2DModel", FLUX_SCHNELL_TRANSFORMER, 210),
        "scheduler": _c("FlowMatchEulerDiscreteScheduler", SCHED_FLUX_SCHNELL),
        "vae": _c("AutoencoderKL", VAE_FLUX, 201), "text_encoder": _c("CLIPTextModel", CLIP_TEXT, 202), "tokenizer": _TOK,
        "text_encoder_2": _c("T5EncoderModel", T5_ENCODER, 203), "tokenizer_2": _c("T5Tokenizer", T5_TOKENIZER)})),
    "controlnet-flux": _single("controlnet", _pipe(None, {"controlnet": _c("FluxControlNetModel", FLUX_CONTROLNET, 205)})),
    "lora-flux": _single("lora", _pipe(None, {"lora": _c("LoRA", LORA_FLUX, 206)})),
    "lora-sdxl": _single("lora", _pipe(None, {"lora": _c("LoRA", LORA_SDXL, 16)})),
    "ip-adapter-sd15": {"kind": "ip_adapter", "folders": {
        "": _pipe(None, {"ip": _c("IPAdapter", IP_ADAPTER_SD15, 301)}),
        "image_encoder": _pipe(None, {"model": _c("CLIPVisionModelWithProjection", CLIP_VISION_PROJ, 300)})}},
    "ip-adapter-sdxl": {"kind": "ip_adapter", "folders": {
        "": _pipe(None, {"ip": _c("IPAdapter", IP_ADAPTER_SDXL, 303)}),
        "image_encoder": _pipe(None, {"model": _c("CLIPVisionModelWithProjection", CLIP_VISION_PROJ, 300)})}},
    "ip-adapter-flux": {"kind": "ip_adapter", "folders": {
        "": _pipe(None, {"ip": _c("IPAdapter", IP_ADAPTER_FLUX, 305)}),
        "image_encoder": _pipe(None, {"model": _c("CLIPVisionModelWithProjection", CLIP_VISION_PROJ, 300)})}},
    "t2i-adapter-sd15": _single("adapter", _pipe(None, {"adapter": _c("T2IAdapterRandom", T2I_ADAPTER, 400)})),
    "embedding-sd15": _single("embedding", _pipe(None, {"embedding": _c("Embedding", EMBEDDING_SD15, 500)})),
    "embedding-sdxl": _single("embedding", _pipe(None, {"embedding": _c("Embedding", EMBEDDING_SDXL, 501)})),
    "dpt": _single("depth-estimator", _pipe(
        None, {"model": _c("DPTForDepthEstimation", DPT, 31), "processor": _c("DPTImageProcessor", DPT_PROCESSOR)})),
    "depth-anything": _single("depth-estimator", _pipe(
        None, {"model": _c("DepthAnythingForDepthEstimation", DEPTH_ANYTHING, 32),
               "processor": _c("DPTImageProcessor", DEPTH_ANYTHING_PROCESSOR)})),
    "vitpose": _single("pose-estimator", _pipe(
        None, {"model": _c("VitPoseForPoseEstimation", VITPOSE, 50),
               "processor": _c("VitPoseImageProcessor", VITPOSE_PROCESSOR)})),
    "rtdetr": _single("object-detector", _pipe(
        None, {"model": _c("RTDetrForObjectDetection", RTDETR, 51),
               "processor": _c("RTDetrImageProcessor", RTDETR_PROCESSOR)})),
}

TINY_NAMES: tuple[str, ...] = tuple(_SPECS)
_BUILD_LOCK = threading.Lock()


class UnknownTinyModel(ValueError):
    """Raised for a ``tiny:NAME`` that is not in ``TINY_NAMES``."""

    def __init__(self, name: str):
        import difflib  # only for a misspelt name

        close = difflib.get_close_matches(name, TINY_NAMES, n=1)
        suggestion = f" (did you mean 'tiny:{close[0]}'?)" if close else ""
        super().__init__(f"unknown tiny model 'tiny:{name}'{suggestion}: runner builds only the tiny models it knows")
        self.name = name
        self.hint = "use one of the tiny models: " + ", ".join(f"tiny:{n}" for n in TINY_NAMES)


def _spec(name: str) -> tuple[str, dict[str, Any]]:
    name = name.removeprefix("tiny:")
    if name not in _SPECS:
        raise UnknownTinyModel(name)
    return name, _SPECS[name]


def _hash12(name: str) -> str:
    _, spec = _spec(name)
    canonical = json.dumps([TINY_BUILDER_VERSION, spec], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def tiny_identity(name: str) -> str:
    """``tiny:NAME@HASH12``: changes whenever the built bytes may change."""
    name, _ = _spec(name)
    return f"tiny:{name}@{_hash12(name)}"


def tiny_kind(name: str) -> str:
    """One of "pipeline", "controlnet", "depth-estimator", "lora", "embedding", "pose-estimator", "object-detector"."""
    return _spec(name)[1]["kind"]


def tiny_pipeline_classes(name: str) -> dict[str, str | None]:
    """Subfolder ("" for the top) -> the diffusers pipeline class its model_index.json names, without building."""
    return {sub: folder[0] for sub, folder in _spec(name)[1]["folders"].items()}


def tiny_config(name: str, component: str) -> dict[str, Any] | None:
    """A component's config as its config.json would say it (with `_class_name`), from the spec, without building:
    what validation reads of a tiny model (a UNet's input channels, a ControlNet's conditioning). A ControlNet made
    from a UNet reports that UNet's conditioning."""
    for _pipeline, parts, _kwargs in _spec(name)[1]["folders"].values():
        if component in parts:
            cls_name, config, _seed = parts[component]
            if cls_name == "LoRA":  # what it adapts: the denoiser class and config (tiny:lora-sd15: its unet)
                return {"_class_name": cls_name, **config}
            if "randomise" in config:  # a transformer ControlNet: its own config
                return {"_class_name": cls_name, **config["config"]}
            if cls_name == "ControlNetModel":
                unet = config["unet"]
                return {"_class_name": cls_name, "cross_attention_dim": unet.get("cross_attention_dim"),
                        "addition_embed_type": unet.get("addition_embed_type"), "in_channels": unet.get("in_channels", 4)}
            return {"_class_name": cls_name, **config}
    return None


def tiny_folder(name: str, root: pathlib.Path) -> pathlib.Path:
    """Where ``ensure_tiny`` keeps this model under ``root`` (it may not be built yet)."""
    name, _ = _spec(name)
    return pathlib.Path(root) / f"{name}-{_hash12(name)}"


def ensure_tiny(name: str, root: pathlib.Path) -> pathlib.Path:
    """Return ``root/NAME-HASH12``, building it first if it does not exist.

    The model is built in a temporary folder next to the target and renamed
    into place, so a returned folder is always complete; when two processes
    race, the loser discards its copy.
    """
    name, spec = _spec(name)
    root = pathlib.Path(root)
    target = tiny_folder(name, root)
    if target.is_dir():
        return target
    from .library_output import quiet_libraries

    quiet_libraries()  # no "Writing model shards" bars on the run's own progress display
    import torch

    # Builders seed torch's global RNG: serialise builds between threads
    # and leave the caller's RNG state as it was.
    with staged_folder(target) as tmp, _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        for sub, (pipeline, parts, kwargs) in spec["folders"].items():
            _build_folder(tmp / sub if sub else tmp, pipeline, parts, kwargs)
    return target


# --------------------------------------------------------------------------
# Builders (the only place that imports torch / diffusers / transformers)
# --------------------------------------------------------------------------

def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte-level alphabet, in the order of the real CLIP vocab."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _tokenizer(config: dict):
    from transformers import CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 256 + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": _BOS, "<|endoftext|>": _EOS}
    return CLIPTokenizer(vocab=vocab, merges=list(config["merges"]), model_max_length=config["model_max_length"])


def _t5_tokenizer(config: dict):
    """A T5 tokenizer built offline: a Unigram model over the pieces below (transformers' T5Tokenizer takes the
    vocabulary as (piece, log-probability) pairs), saved and reloaded like a real one."""
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(chr(c), -5.0) for c in range(33, 127)] + [(chr(c), -6.0) for c in range(0xC0, 0x100)]
    vocab += [("\u2581" + chr(c), -4.0) for c in range(ord("a"), ord("z") + 1)]
    return T5TokenizerFast(vocab=vocab, extra_ids=config["extra_ids"], model_max_length=config["model_max_length"])


def _xlmr_tokenizer(config: dict):
    """An XLM-RoBERTa tokenizer built offline with the `tokenizers` library: a SentencePiece-style Unigram model
    (specials in XLM-R's order, <mask> last), wrapped as transformers' XLMRobertaTokenizerFast."""
    import string

    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import XLMRobertaTokenizerFast

    space = "\u2581"
    pieces = [(space, -2.0)] + [(space + word, -3.0) for word in config["words"]]
    pieces += [(c, -5.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [(space + c, -6.0) for c in string.ascii_letters + string.digits]
    vocab = [(t, 0.0) for t in ("<s>", "<pad>", "</s>", "<unk>")] + list(dict(pieces).items()) + [("<mask>", 0.0)]
    model = Tokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))
    model.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement=space, prepend_scheme="always")])
    model.decoder = decoders.Metaspace(replacement=space, prepend_scheme="always")
    model.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return XLMRobertaTokenizerFast(tokenizer_object=model, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=config["model_max_length"])


def _transformer_controlnet(cls_name: str, config: dict, seed: int):
    """An SD3 or FLUX ControlNet from its config, its zero-initialised projections drawn at random."""
    import diffusers
    import torch

    torch.manual_seed(seed)
    controlnet = getattr(diffusers, cls_name)(**config["config"]).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name in config["randomise"]:
            part = getattr(controlnet, name)
            for _name, parameter in sorted(part.named_parameters()):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * config["std"])
    return controlnet


def _transformers_model(cls_name: str, config: dict):
    import transformers

    if "model_type" in config:
        cfg = transformers.AutoConfig.for_model(**config)
    else:  # CLIP text/vision towers: config class named after the model
        cfg_cls = "CLIPVisionConfig" if "Vision" in cls_name else "CLIPTextConfig"
        cfg = getattr(transformers, cfg_cls)(**config)
    return getattr(transformers, cls_name)(cfg).eval()


def _controlnet(config: dict, seed: int):
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(config["unet_seed"])
    unet = UNet2DConditionModel(**config["unet"])
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=tuple(config["conditioning_embedding_out_channels"]))
    torch.manual_seed(seed)
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                  controlnet.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for conv in zero_convs:
            for p in conv.parameters():
                p.normal_(0.0, config["zero_conv_std"])
    return controlnet


class _LoraWeights:
    """LoRA layers for a tiny denoiser (a UNet, or an SD3 / FLUX transformer), with random (not zero)
    up-projections so that they change the output, saved as that family's pipeline saves LoRAs."""

    def __init__(self, config: dict, seed: int):
        import diffusers
        import torch
        from peft import LoraConfig
        from peft.utils import get_peft_model_state_dict

        if "unet" in config:  # tiny:lora-sd15's spec, from before the denoiser was named
            config = {**config, "denoiser": "UNet2DConditionModel", "config": config["unet"],
                      "denoiser_seed": config["unet_seed"], "pipeline": "StableDiffusionPipeline",
                      "argument": "unet_lora_layers"}
        torch.manual_seed(config["denoiser_seed"])
        denoiser = getattr(diffusers, config["denoiser"])(**config["config"])
        denoiser.add_adapter(LoraConfig(r=config["rank"], lora_alpha=config["alpha"], init_lora_weights="gaussian",
                                        target_modules=list(config["target_modules"])))
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, parameter in sorted(denoiser.named_parameters()):
                if "lora_" in name:
                    parameter.normal_(0.0, config["std"])
        self.layers = get_peft_model_state_dict(denoiser)
        self.pipeline, self.argument = config["pipeline"], config["argument"]

    def save_pretrained(self, folder: pathlib.Path) -> None:
        import diffusers

        getattr(diffusers, self.pipeline).save_lora_weights(folder, **{self.argument: self.layers},
                                                            safe_serialization=True)


class _Embedding:
    """Textual-inversion vectors drawn at random (so that a prompt using them changes the image)."""

    def __init__(self, config: dict, seed: int):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.tensors = {key: torch.randn(config["vectors"], width, generator=generator) * config["std"]
                        for key, width in config["keys"].items()}

    def save_pretrained(self, folder: pathlib.Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.tensors, str(folder / "learned_embeds.safetensors"))


class _IPAdapter:
    """IP-Adapter weights for a UNet config, drawn at random, in the original layout (one .safetensors file)."""

    FILE = "ip-adapter.safetensors"

    def __init__(self, config: dict, seed: int):
        import torch

        generator = torch.Generator().manual_seed(seed)

        def draw(*shape, offset: float = 0.0):
            return (torch.randn(shape, generator=generator) * config["std"] + offset).contiguous()

        embed = CLIP_VISION_PROJ["projection_dim"]
        if "transformer" in config:  # FLUX, XLabs' names
            flux = config["transformer"]
            joint, inner = flux["joint_attention_dim"], flux["num_attention_heads"] * flux["attention_head_dim"]
            self.tensors = {"ip_adapter_proj_model.proj.weight": draw(config["tokens"] * joint, embed),
                            "ip_adapter_proj_model.proj.bias": draw(config["tokens"] * joint),
                            "ip_adapter_proj_model.norm.weight": draw(joint, offset=1.0),
                            "ip_adapter_proj_model.norm.bias": draw(joint)}
            for block in range(flux["num_layers"]):
                for side in ("k", "v"):
                    name = f"double_blocks.{block}.processor.ip_adapter_double_stream_{side}_proj"
                    self.tensors[f"{name}.weight"] = draw(inner, joint)
                    self.tensors[f"{name}.bias"] = draw(inner)
            return
        from diffusers import UNet2DConditionModel

        with torch.device("meta"):
            unet = UNet2DConditionModel(**config["unet"])
        cross, blocks = unet.config.cross_attention_dim, list(unet.config.block_out_channels)
        self.tensors = {"image_proj.proj.weight": draw(config["tokens"] * cross, embed),
                        "image_proj.proj.bias": draw(config["tokens"] * cross),
                        "image_proj.norm.weight": draw(cross, offset=1.0), "image_proj.norm.bias": draw(cross)}
        number = 1
        for name in unet.attn_processors:
            if name.endswith("attn1.processor"):
                continue
            if name.startswith("mid_block"):
                hidden = blocks[-1]
            elif name.startswith("up_blocks"):
                hidden = blocks[::-1][int(name[len("up_blocks.")])]
            else:
                hidden = blocks[int(name[len("down_blocks.")])]
            self.tensors[f"ip_adapter.{number}.to_k_ip.weight"] = draw(hidden, cross)
            self.tensors[f"ip_adapter.{number}.to_v_ip.weight"] = draw(hidden, cross)
            number += 2

    def save_pretrained(self, folder: pathlib.Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file(self.tensors, str(folder / self.FILE))


def _t2i_adapter(config: dict, seed: int):
    import torch
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    adapter = T2IAdapter(**config["config"]).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, parameter in sorted(adapter.named_parameters()):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * config["std"])
    return adapter


def _build_component(cls_name: str, config: dict, seed: int | None):
    import diffusers
    import torch
    import transformers

    if cls_name == "CLIPTokenizer":
        return _tokenizer(config)
    if cls_name == "T5Tokenizer":
        return _t5_tokenizer(config)
    if cls_name == "XLMRobertaTokenizer":
        return _xlmr_tokenizer(config)
    if cls_name == "MultilingualCLIP":
        from diffusers.pipelines.kandinsky.text_encoder import MCLIPConfig, MultilingualCLIP

        torch.manual_seed(seed)
        return MultilingualCLIP(MCLIPConfig(**config)).eval()
    if cls_name in ("SD3ControlNetModel", "FluxControlNetModel"):
        return _transformer_controlnet(cls_name, config, seed)
    if cls_name.endswith("Scheduler"):
        return getattr(diffusers, cls_name)(**config)
    if cls_name.endswith("ImageProcessor"):
        # Always the PIL backend: same saved bytes with or without torchvision.
        return getattr(transformers, cls_name + "Pil")(**config)
    if cls_name == "ControlNetModel":
        return _controlnet(config, seed)
    if cls_name == "LoRA":
        return _LoraWeights(config, seed)
    if cls_name == "Embedding":
        return _Embedding(config, seed)
    if cls_name == "IPAdapter":
        return _IPAdapter(config, seed)
    if cls_name == "T2IAdapterRandom":
        return _t2i_adapter(config, seed)
    torch.manual_seed(seed)
    if hasattr(diffusers, cls_name) and not hasattr(transformers, cls_name):
        model = getattr(diffusers, cls_name)(**config)
        if cls_name == "PriorTransformer":
            # clip_std is zero-initialised; it scales the prior's output, which
            # would otherwise always be clip_mean (zeros).
            torch.nn.init.ones_(model.clip_std)
        return model.eval()
    return _transformers_model(cls_name, config)


def _build_folder(folder: pathlib.Path, pipeline: str | None, parts: dict, kwargs: dict) -> None:
    components = {key: _build_component(*part) for key, part in parts.items()}
    if pipeline is None:
        for obj in components.values():
            _save(obj, folder)
        return
    import diffusers

    pipe = getattr(diffusers, pipeline)(**components, **kwargs)
    pipe.save_pretrained(folder, safe_serialization=True)
    # Without torchvision, transformers hands out its PIL image processors
    # (e.g. "CLIPImageProcessorPil"); record the backend-neutral class name
    # that real checkpoints use, so the folder does not depend on the install.
    index = folder / "model_index.json"
    data = json.loads(index.read_text())
    for value in data.values():
        if isinstance(value, list) and isinstance(value[1], str) and value[1].endswith("ImageProcessorPil"):
            value[1] = value[1].removesuffix("Pil")
    index.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _save(obj, folder: pathlib.Path) -> None:
    if hasattr(obj, "parameters"):
        obj.save_pretrained(folder, safe_serialization=True)
    else:
        obj.save_pretrained(folder)
