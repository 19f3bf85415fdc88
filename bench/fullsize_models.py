"""Random-weight models of the real architectures for the GPU benchmarks, built offline from configs (no hub):
SDXL base at full size (bench/gpu/bench.py's 1024 px case) and FLUX.1-dev at reduced depth (its full widths: the
transformer with 2 double-stream and 4 single-stream blocks of 19 and 38, the T5-XXL encoder with 2 of its 24 layers,
CLIP-L and the FLUX VAE whole). Tokenizers are the tiny byte-level ones (their ids fit the real vocabularies).
Built once into a folder, weights in float16 (half the disk; runner and the script load them as the device wants),
on the GPU where there is one (random initialisation of billions of parameters is slow on a CPU), and loaded with
from_pretrained like any checkpoint.

    python bench/fullsize_models.py sdxl|flux FOLDER
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
XL = REPO / "runner" / "models" / "single_file_configs" / "xl_base"
FLUX_TRANSFORMER = {  # FLUX.1-dev's transformer config, at reduced depth (19 and 38 in the real model)
    "patch_size": 1, "in_channels": 64, "num_layers": 2, "num_single_layers": 4, "attention_head_dim": 128,
    "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768, "guidance_embeds": True,
    "axes_dims_rope": [16, 56, 56],
}
FLUX_VAE = {  # FLUX.1-dev's VAE config
    "in_channels": 3, "out_channels": 3, "latent_channels": 16, "sample_size": 1024, "layers_per_block": 2,
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "norm_num_groups": 32, "use_quant_conv": False,
    "use_post_quant_conv": False, "shift_factor": 0.1159, "scaling_factor": 0.3611,
}
T5_XXL = {  # google/t5-v1_1-xxl's encoder (FLUX.1's text_encoder_2), 2 of its 24 layers
    "model_type": "t5", "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 2,
    "num_heads": 64, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu", "dropout_rate": 0.0, "pad_token_id": 0, "eos_token_id": 1,
    "decoder_start_token_id": 0, "tie_word_embeddings": False,
}


def _config(part: str) -> dict:
    return json.loads((XL / part / "config.json").read_text())


def _save(pipe, folder: Path) -> Path:
    import torch

    pipe.to(torch.float16)
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    pipe.save_pretrained(staging, safe_serialization=True)
    os.replace(staging, folder)
    return folder


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_sdxl(folder: Path) -> Path:
    if (folder / "model_index.json").exists():
        return folder
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from runner.models.tiny import _BOS, _EOS, TOKENIZER, _tokenizer

    ids = {"bos_token_id": _BOS, "eos_token_id": _EOS, "pad_token_id": _EOS}
    torch.manual_seed(0)
    with _device():
        unet = UNet2DConditionModel.from_config(_config("unet"))
        vae = AutoencoderKL.from_config(_config("vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig(**{**_config("text_encoder"), **ids})).eval()
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**{**_config("text_encoder_2"), **ids})).eval()
    scheduler = EulerDiscreteScheduler.from_config(json.loads((XL / "scheduler" / "scheduler_config.json").read_text()))
    tokenizer = _tokenizer(TOKENIZER)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    return _save(pipe, folder)


def build_flux(folder: Path) -> Path:
    if (folder / "model_index.json").exists():
        return folder
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from fullsize_sd15 import TEXT
    from runner.models.tiny import SCHED_FLUX, T5_TOKENIZER, TOKENIZER, _t5_tokenizer, _tokenizer

    torch.manual_seed(0)
    with _device():
        transformer = FluxTransformer2DModel(**FLUX_TRANSFORMER)
        vae = AutoencoderKL(**FLUX_VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT)).eval()
        text_encoder_2 = T5EncoderModel(T5Config(**T5_XXL)).eval()
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**SCHED_FLUX), vae=vae, text_encoder=text_encoder,
                        tokenizer=_tokenizer(TOKENIZER), text_encoder_2=text_encoder_2,
                        tokenizer_2=_t5_tokenizer(T5_TOKENIZER), transformer=transformer)
    return _save(pipe, folder)


BUILDERS = {"sdxl": build_sdxl, "flux": build_flux}


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))
    print(BUILDERS[sys.argv[1]](Path(sys.argv[2])))
