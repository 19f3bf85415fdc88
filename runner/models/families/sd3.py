"""Stable Diffusion 3 and 3.5: an MMDiT transformer over 16-channel latents, two CLIP text encoders and a T5, a
flow-matching schedule; txt2img, img2img and inpaint through diffusers' AutoPipelines, SD3 ControlNets on txt2img
(diffusers has no SD3 ControlNet img2img, and its inpainting ControlNet is a pipeline of its own), LoRAs."""

from .base import Family, Task


def _repository(keys) -> str:
    """diffusers' repository for an SD3 file's architecture, as diffusers tells them apart: SD3.5 Large has 38 joint
    blocks, SD3.5 Medium a second attention in its first blocks (MMDiT-X), SD3 Medium neither."""
    blocks = {key.split("joint_blocks.")[1].split(".")[0] for key in keys if "joint_blocks." in key}
    if "37" in blocks:
        return "stabilityai/stable-diffusion-3.5-large"
    if any(".x_block.attn2." in key for key in keys):
        return "stabilityai/stable-diffusion-3.5-medium"
    return "stabilityai/stable-diffusion-3-medium-diffusers"

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
    exporter="runner.models.export_generation:export_diffusers",
    step_cache=True,  # a transformer denoiser: diffusers' enable_cache
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
    single_file_config=lambda keys: _repository(keys),
    single_file_parts={"vae": ("first_stage_model.",), "text_encoder": ("text_encoders.clip_l.",),
                       "text_encoder_2": ("text_encoders.clip_g.",), "text_encoder_3": ("text_encoders.t5xxl.",)},
)
