"""Any other checkpoint diffusers' AutoPipelines know (PixArt, Sana, ...): loaded with DiffusionPipeline, its task
pipelines derived with AutoPipeline's from_pipe, no constraint runner can check before loading it."""

from .base import Family, Task

FAMILY = Family(
    key="autopipeline",
    name="an AutoPipeline checkpoint",
    classes=(),
    tasks={task: Task(autopipeline) for task, autopipeline in (
        ("text2image", "AutoPipelineForText2Image"), ("image2image", "AutoPipelineForImage2Image"),
        ("inpainting", "AutoPipelineForInpainting"), ("refining", "AutoPipelineForImage2Image"))},
    runner="runner.models.generate:generate_diffusers",
    exporter="runner.models.export_generation:export_diffusers",
    controlnet_class=None,
    lora=True,
)
