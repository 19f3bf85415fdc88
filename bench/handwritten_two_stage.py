"""bench/sweep_chain.yaml as a hand-written diffusers script (txt2img, then img2img), the way a user edits and re-runs it.

Usage: python handwritten_two_stage.py MODEL_FOLDER SIZE STEPS GUIDANCE OUT.png
"""

import sys

import torch
from diffusers import AutoPipelineForImage2Image, StableDiffusionPipeline

model, size, steps, guidance, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
pipe = StableDiffusionPipeline.from_pretrained(model, dtype=torch.float32, use_safetensors=True)
pipe.set_progress_bar_config(disable=True)
img2img = AutoPipelineForImage2Image.from_pipe(pipe)
img2img.set_progress_bar_config(disable=True)
with torch.inference_mode():
    base = pipe(prompt="a lighthouse on a cliff", num_inference_steps=steps, width=size, height=size,
                generator=torch.Generator("cpu").manual_seed(1)).images[0]
    second = img2img(prompt="a lighthouse at night, oil painting", image=base, strength=0.5, guidance_scale=guidance,
                     num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(2)).images[0]
second.save(out, format="PNG")
