"""Kandinsky 2.2: a prior (CLIP text to image embedding) and a decoder (UNet + MoVQ); txt2img, img2img, inpaint and
interpolate through diffusers' combined pipelines, and its depth ControlNet, which is a decoder of its own that
takes a hint (kandinsky-community/kandinsky-2-2-controlnet-depth): it goes in a txt2img or img2img node's
`controlnet:` and runs with the model's prior, as diffusers' Kandinsky 2.2 docs run it. See prior_decoder.py."""

from __future__ import annotations

from ..schedulers import UNSCALED_SCHEDULERS
from .base import Family, Task

HINT_DECODERS = {"text2image": "KandinskyV22ControlnetPipeline", "image2image": "KandinskyV22ControlnetImg2ImgPipeline"}

FAMILY = Family(
    key="kandinsky22",
    name="Kandinsky 2.2",
    classes=("KandinskyV22Pipeline", "KandinskyV22Img2ImgPipeline", "KandinskyV22InpaintPipeline",
             "KandinskyV22CombinedPipeline", "KandinskyV22Img2ImgCombinedPipeline",
             "KandinskyV22InpaintCombinedPipeline", "KandinskyV22PriorPipeline"),
    tasks={
        "text2image": Task("AutoPipelineForText2Image", (4,), controlnet=True),
        "image2image": Task("AutoPipelineForImage2Image", (4,), controlnet=True),
        "inpainting": Task("AutoPipelineForInpainting", (9,),
                           example="kandinsky-community/kandinsky-2-2-decoder-inpaint; tiny:kandinsky22-inpaint offline"),
        "interpolation": Task(None, (4,), classes=("KandinskyV22PriorPipeline", "KandinskyV22Pipeline")),
    },
    runner="runner.models.families.prior_decoder:generate",
    exporter="runner.models.families.prior_decoder:export",
    prior_decoder=dict(autopipeline_key="kandinsky22", prior_class="KandinskyV22PriorPipeline",
                       decoder_parts=("unet", "scheduler", "movq"),
                       decoder_hub_id="kandinsky-community/kandinsky-2-2-decoder",
                       prior_hub_id="kandinsky-community/kandinsky-2-2-prior", hint_decoders=HINT_DECODERS),
    # its ControlNet is a whole decoder pipeline (model_index.json names the class)
    controlnet_class="KandinskyV22ControlnetPipeline",
    controlnet_fits=lambda config: config.get("_class_name") in HINT_DECODERS.values(),
    controlnet_settings=False,  # the hint always acts in full
    controlnet_most=1,
    lora=False,
    runtime_options=False,  # its prior + decoder runner applies none of them
    schedulers=UNSCALED_SCHEDULERS,  # its pipelines never scale the model inputs (no euler, heun, kdpm2)
    hub_hints=("kandinsky-2-2",),
    size_multiple=64,  # the decoder works in steps of 64 px (MoVQ factor 8, squared)
    examples={"checkpoint": "kandinsky-community/kandinsky-2-2-decoder; tiny:kandinsky22 offline",
              "controlnet": "kandinsky-community/kandinsky-2-2-controlnet-depth; tiny:controlnet-kandinsky22 offline"},
)
