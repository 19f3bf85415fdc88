"""The demo chain as a hand-written diffusers script: the baseline that runner is measured against.

Usage: python handwritten_demo.py MODEL_FOLDER SIZE STEPS OUT_FOLDER
Makes the same calls with the same seeds as demo_chain.yaml and saves PNGs the same way.
"""

import sys
from pathlib import Path

import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, StableDiffusionPipeline
from PIL import Image, ImageDraw, ImageFilter, ImageOps

model, size, steps, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
prompt = "scandinavian living room, soft morning light"
out.mkdir(parents=True, exist_ok=True)

pipe = StableDiffusionPipeline.from_pretrained(model, dtype=torch.float32, use_safetensors=True)
pipe.set_progress_bar_config(disable=True)
img2img = AutoPipelineForImage2Image.from_pipe(pipe)
inpaint = AutoPipelineForInpainting.from_pipe(pipe)
for p in (img2img, inpaint):
    p.set_progress_bar_config(disable=True)

room = ImageOps.exif_transpose(Image.open(Path(__file__).parent / "inputs/room.png")).convert("RGB")
room = room.resize((size, size), Image.Resampling.LANCZOS)
mask = Image.new("L", room.size, 0)
ImageDraw.Draw(mask).rectangle([36, 6, 58, 26], fill=255)
mask = mask.filter(ImageFilter.MaxFilter(5))

with torch.inference_mode():
    generated = pipe(prompt=prompt, negative_prompt="blurry", num_inference_steps=steps, width=size, height=size,
                     generator=torch.Generator("cpu").manual_seed(1)).images[0]
    restyled = img2img(prompt=prompt + ", oil painting", image=room, strength=0.6, num_inference_steps=steps,
                       generator=torch.Generator("cpu").manual_seed(2)).images[0]
    fixed = inpaint(prompt="a window", image=restyled, mask_image=mask, num_inference_steps=steps, width=size, height=size,
                    generator=torch.Generator("cpu").manual_seed(3)).images[0]
generated.save(out / "txt2img.png", format="PNG")
fixed.save(out / "final.png", format="PNG")
