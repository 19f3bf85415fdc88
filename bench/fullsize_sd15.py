"""A full-size Stable Diffusion 1.5 architecture with random weights, for realistic-cost benchmarks offline.

The UNet (860M parameters), VAE and CLIP text encoder use the real SD1.5
configs (diffusers/transformers defaults for SD1.5); only the weights are
random and the tokenizer is the tiny byte-level one (ids fit the real vocab).
Built once into a folder and loaded with from_pretrained like any checkpoint.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

UNET = {  # stable-diffusion-v1-5 unet/config.json
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
VAE = {  # stable-diffusion-v1-5 vae/config.json
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 512, "layers_per_block": 2,
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
TEXT = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
        "num_hidden_layers": 12, "max_position_embeddings": 77, "bos_token_id": 512, "eos_token_id": 513,
        "pad_token_id": 513, "hidden_act": "quick_gelu", "projection_dim": 768}


def build(folder: Path) -> Path:
    if (folder / "model_index.json").exists():
        return folder
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from runner.models.tiny import SCHED_SD, TOKENIZER, _tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET)
    vae = AutoencoderKL(**VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT)).eval()
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=_tokenizer(TOKENIZER), unet=unet,
                                   scheduler=DDIMScheduler(**SCHED_SD), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    pipe.save_pretrained(staging, safe_serialization=True)
    os.replace(staging, folder)
    return folder


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
