"""FLUX.1 (dev and schnell): a transformer over 16-channel latents packed 2x2, a CLIP and a T5 text encoder, a
flow-matching schedule; `guidance_scale` is dev's distilled guidance, an input of the transformer (schnell ignores
it); txt2img, img2img and inpaint through diffusers' AutoPipelines, each with FLUX ControlNets, and LoRAs.

FLUX's img2img and inpaint pipelines make 1024 x 1024 px images unless given a size, whatever the input's: runner
passes the input image's size when the node gives none, as SD and SDXL keep it."""

from .base import Family, Task


def _guided(keys) -> bool:
    return any("guidance_in." in key for key in keys)

from .flow import FLOW_SCHEDULERS

FAMILY = Family(
    key="flux",
    name="FLUX.1",
    classes=("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline", "FluxControlNetPipeline",
             "FluxControlNetImg2ImgPipeline", "FluxControlNetInpaintPipeline"),
    tasks={
        "text2image": Task("AutoPipelineForText2Image", (64,), controlnet=True),
        "image2image": Task("AutoPipelineForImage2Image", (64,), controlnet=True, size_from_input=True),
        "inpainting": Task("AutoPipelineForInpainting", (64,), controlnet=True, size_from_input=True),
    },
    runner="runner.models.generate:generate_diffusers",
    exporter="runner.models.export_generation:export_diffusers",
    step_cache=True,  # a transformer denoiser: diffusers' enable_cache
    controlnet_class="FluxControlNetModel",
    controlnet_fits=lambda config: config.get("_class_name") == "FluxControlNetModel",
    hub_hints=("flux.1", "flux1"),
    examples={"checkpoint": "black-forest-labs/FLUX.1-dev; tiny:flux offline",
              "controlnet": "InstantX/FLUX.1-dev-Controlnet-Canny; tiny:controlnet-flux offline"},
    schedulers=FLOW_SCHEDULERS,
    lora_fits=lambda facts, denoiser: facts.get("denoiser") == "transformer",
    size_multiple=16,
    ip_adapter=True,  # XLabs' layout (FluxIPAdapterMixin): one scale a number, no per-block dicts or masks
    # Black Forest Labs' transformer file (ComfyUI's diffusion_models/ or unet/), or a checkpoint packing it
    single_file_keys=(("double_blocks.", "single_blocks."), ("model.diffusion_model.double_blocks.",)),
    # dev embeds the distilled guidance (guidance_in); schnell does not
    single_file_config=lambda keys: ("black-forest-labs/FLUX.1-dev" if _guided(keys)
                                     else "black-forest-labs/FLUX.1-schnell"),
    single_file_overrides=lambda keys: {"guidance_embeds": _guided(keys)},
    single_file_parts={"vae": ("vae.",), "text_encoder": ("text_encoders.clip_l.",),
                       "text_encoder_2": ("text_encoders.t5xxl.",)},
)
