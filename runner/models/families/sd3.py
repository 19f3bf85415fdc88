"""Stable Diffusion 3 and 3.5: an MMDiT transformer over 16-channel latents, two CLIP text encoders and a T5, a
flow-matching schedule; txt2img, img2img and inpaint through diffusers' AutoPipelines, SD3 ControlNets on txt2img
(diffusers has no SD3 ControlNet img2img, and its inpainting ControlNet is a pipeline of its own), LoRAs."""

from .base import Family, Task
from .flow import FLOW_SCHEDULERS

FAMILY = Family(
    key="sd3",
    name="Stable Diffusion 3",
    classes=("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline",
             "StableDiffusion3ControlNetPipeline"),
    tasks={
        "text2image": Task("AutoPipelineForText2Image", (16,), controlnet=True),
        "image2image": Task("AutoPipelineForImage2Image", (16,)),
        "inpainting": Task("AutoPipelineForInpainting", (16,)),
    },
    runner="runner.models.generate:generate_diffusers",
    controlnet_class="SD3ControlNetModel",
    controlnet_fits=lambda config: config.get("_class_name") == "SD3ControlNetModel",
    hub_hints=("stable-diffusion-3",),
    examples={"checkpoint": "stabilityai/stable-diffusion-3.5-medium; tiny:sd3 offline",
              "controlnet": "InstantX/SD3-Controlnet-Canny; tiny:controlnet-sd3 offline"},
    schedulers=FLOW_SCHEDULERS,
    # a transformer's LoRA; FLUX's have single-stream blocks, which SD3's transformer has not
    lora_fits=lambda facts, denoiser: facts.get("denoiser") == "transformer" and not facts.get("single_blocks"),
    size_multiple=16,
    # Stability's single files (the MMDiT under model.diffusion_model., with the VAE and text encoders) or the
    # MMDiT alone as ComfyUI keeps it in diffusion_models/
    single_file_keys=(("model.diffusion_model.joint_blocks.",), ("joint_blocks.", "x_embedder.")),
)
