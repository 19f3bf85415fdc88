"""Stable Diffusion 1.x and 2.x: UNet checkpoints with one CLIP text encoder, 4-channel latents; txt2img, img2img and
inpaint through diffusers' AutoPipelines (with ControlNets), depth-to-image with its own pipeline class."""

from .base import Family, Task
from .checks import unet_lora_fits

FAMILY = Family(
    key="sd",
    name="SD 1.x/2.x",
    classes=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
             "StableDiffusionDepth2ImgPipeline", "StableDiffusionControlNetPipeline",
             "StableDiffusionControlNetImg2ImgPipeline", "StableDiffusionControlNetInpaintPipeline"),
    tasks={
        "text2image": Task("AutoPipelineForText2Image", (4,), controlnet=True),
        "image2image": Task("AutoPipelineForImage2Image", (4,), controlnet=True),
        "inpainting": Task("AutoPipelineForInpainting", (4, 9), controlnet=True,
                        example="stable-diffusion-v1-5/stable-diffusion-inpainting; tiny:sd15-inpaint offline"),
        # AutoPipeline has no depth-to-image task: the checkpoint's own class (DiffusionPipeline loads it)
        "depth2image": Task(None, (5,), classes=("StableDiffusionDepth2ImgPipeline",),
                          example="stabilityai/stable-diffusion-2-depth; tiny:sd2-depth offline"),
        "refining": Task("AutoPipelineForImage2Image", (4,)),
    },
    runner="runner.models.generate:generate_diffusers",
    exporter="runner.models.export_generation:export_diffusers",
    controlnet_class="ControlNetModel",
    # SDXL ControlNets condition on size and crop (text_time) as SDXL's UNet does; SD 1.x/2.x ones do not
    controlnet_fits=lambda config: (config.get("_class_name") == "ControlNetModel"
                                     and config.get("addition_embed_type") != "text_time"),
    latents=True,
    batches=True,
    # the original (LDM / A1111) layout: a UNet and one CLIP text encoder (SD 2.x: OpenCLIP, under the same name)
    single_file_keys=(("model.diffusion_model.input_blocks.", "cond_stage_model."),),
    lora_fits=unet_lora_fits,
    freeu=True,
    embeddings=True,
    weighted_prompts=True,
    ip_adapter=True,
    ip_adapter_blocks=True,
    adapter_pipeline="StableDiffusionAdapterPipeline",
    weighted_clip_skip=(1,),  # compel's penultimate layer, normalized: diffusers' clip_skip=1
    text_widths=(768, 1024),  # CLIP ViT-L (SD 1.x), OpenCLIP ViT-H (SD 2.x)
    hub_hints=("stable-diffusion-v1", "stable-diffusion-2", "sd-v1-", "sd21", "sd-2"),
    examples={"checkpoint": "stable-diffusion-v1-5/stable-diffusion-v1-5; tiny:sd15 offline",
              "controlnet": "lllyasviel/control_v11p_sd15_canny; tiny:controlnet-sd15 offline"},
)
