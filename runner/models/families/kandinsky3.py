"""Kandinsky 3: one pipeline (a Flan-UL2 text encoder, Kandinsky3UNet, a MoVQ); txt2img and img2img through
diffusers' AutoPipelines. Kandinsky3Img2ImgPipeline makes an image of its input's size (it swallows width and
height, which runner refuses at the node). No inpainting pipeline, ControlNet or LoRA loader in diffusers."""

from ..schedulers import UNSCALED_SCHEDULERS
from .base import Family, Task

FAMILY = Family(
    key="kandinsky3",
    name="Kandinsky 3",
    classes=("Kandinsky3Pipeline", "Kandinsky3Img2ImgPipeline"),
    tasks={
        "text2image": Task("AutoPipelineForText2Image", (4,)),
        "image2image": Task("AutoPipelineForImage2Image", (4,)),
    },
    runner="runner.models.generate:generate_diffusers",
    exporter="runner.models.export_generation:export_diffusers",
    lora=False,
    schedulers=UNSCALED_SCHEDULERS,  # its pipelines never scale the model inputs (no euler, heun, kdpm2)
    hub_hints=("kandinsky-3",),
    size_multiple=64,  # MoVQ factor 8, squared, as diffusers' downscale_height_and_width rounds
    examples={"checkpoint": "kandinsky-community/kandinsky-3; tiny:kandinsky3 offline"},
)
