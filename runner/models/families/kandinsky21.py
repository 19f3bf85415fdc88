"""Kandinsky 2.1: a prior (CLIP text to image embedding) and a decoder that reads both the embedding and the prompt
(a multilingual CLIP: XLM-RoBERTa); txt2img, img2img, inpaint and interpolate through diffusers' combined
pipelines. See prior_decoder.py."""

from __future__ import annotations

from ..schedulers import UNSCALED_SCHEDULERS
from .base import Family, Task

FAMILY = Family(
    key="kandinsky21",
    name="Kandinsky 2.1",
    classes=("KandinskyPipeline", "KandinskyImg2ImgPipeline", "KandinskyInpaintPipeline", "KandinskyCombinedPipeline",
             "KandinskyImg2ImgCombinedPipeline", "KandinskyInpaintCombinedPipeline", "KandinskyPriorPipeline"),
    tasks={
        "text2image": Task("AutoPipelineForText2Image", (4,)),
        "image2image": Task("AutoPipelineForImage2Image", (4,)),
        "inpainting": Task("AutoPipelineForInpainting", (9,),
                           example="kandinsky-community/kandinsky-2-1-inpaint; tiny:kandinsky21-inpaint offline"),
        "interpolation": Task(None, (4,), classes=("KandinskyPriorPipeline", "KandinskyPipeline")),
    },
    runner="runner.models.families.prior_decoder:generate",
    exporter="runner.models.families.prior_decoder:export",
    prior_decoder=dict(autopipeline_key="kandinsky", prior_class="KandinskyPriorPipeline",
                       decoder_parts=("text_encoder", "tokenizer", "unet", "scheduler", "movq"),
                       decoder_hub_id="kandinsky-community/kandinsky-2-1",
                       prior_hub_id="kandinsky-community/kandinsky-2-1-prior", decoder_reads_prompt=True),
    lora=False,
    runtime_options=False,  # its prior + decoder runner applies none of them
    schedulers=UNSCALED_SCHEDULERS,  # its pipelines never scale the model inputs (no euler, heun, kdpm2)
    hub_hints=("kandinsky-2-1",),
    size_multiple=64,  # the decoder works in steps of 64 px (MoVQ factor 8, squared)
    examples={"checkpoint": "kandinsky-community/kandinsky-2-1; tiny:kandinsky21 offline"},
)
