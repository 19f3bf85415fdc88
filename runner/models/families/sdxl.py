"""Stable Diffusion XL (base, refiner, Turbo): UNet checkpoints with two CLIP text encoders and size/crop
conditioning, 4-channel latents; txt2img, img2img, inpaint and refine through diffusers' AutoPipelines, with
ControlNets; the refiner takes a base's latents (denoising_end / denoising_start)."""

from .base import Family, Task
from .checks import unet_lora_fits

FAMILY = Family(
    key="sdxl",
    name="SDXL",
    classes=("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline",
             "StableDiffusionXLControlNetPipeline", "StableDiffusionXLControlNetImg2ImgPipeline",
             "StableDiffusionXLControlNetInpaintPipeline"),
    tasks={
        "text2image": Task("AutoPipelineForText2Image", (4,), controlnet=True),
        "image2image": Task("AutoPipelineForImage2Image", (4,), controlnet=True),
        "inpainting": Task("AutoPipelineForInpainting", (4, 9), controlnet=True),
        "refining": Task("AutoPipelineForImage2Image", (4,)),
    },
    runner="runner.models.generate:generate_diffusers",
    exporter="runner.models.export_generation:export_diffusers",
    controlnet_class="ControlNetModel",
    # SDXL ControlNets condition on size and crop (text_time) as SDXL's UNet does; SD 1.x/2.x ones do not
    controlnet_fits=lambda config: (config.get("_class_name") == "ControlNetModel"
                                     and config.get("addition_embed_type") == "text_time"),
    latents=True,
    batches=True,
    lora_fits=unet_lora_fits,
    freeu=True,
    embeddings=True,
    weighted_prompts=True,
    ip_adapter=True,
    ip_adapter_blocks=True,
    adapter_pipeline="StableDiffusionXLAdapterPipeline",
    adapter_factor=True,
    text_widths=(2048, 1280),  # its two text encoders joined; the refiner reads OpenCLIP-G alone
    # the original layout: a UNet and the conditioner's text encoders (the refiner has OpenCLIP-G alone)
    single_file_keys=(("model.diffusion_model.input_blocks.", "conditioner.embedders."),),
    hub_hints=("stable-diffusion-xl", "sdxl"),
    examples={"checkpoint": "stabilityai/stable-diffusion-xl-base-1.0; tiny:sdxl offline",
              "controlnet": "diffusers/controlnet-canny-sdxl-1.0; tiny:controlnet-sdxl offline"},
)
