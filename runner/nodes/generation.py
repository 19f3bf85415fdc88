"""Diffusion nodes. Each call goes to a diffusers pipeline from the model registry, arguments untouched."""


from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, ClassVar, Literal

from pydantic import Field, model_validator

from ..core.empty import empty_dict, empty_list
from ..language.fields import (
    ArgumentsWithImages,
    Fields,
    ImageIn,
    KeyedWhenSet,
    Attention,
    Compile,
    LatentsIn,
    MaskIn,
    ModelIn,
    model_in,
    Offload,
    Quantize,
    SCHEDULERS,
    SchedulerName,
    Seed,
    StepCache,
)
from ..language.errors import Invalid, exactly_one
from ..language.refs import Link, unresolve
from .arguments import CALL_ARGUMENTS, CONTROLNET_ITEM_ARGUMENTS
from .base import Batching, node_type
from .call_checks import check_pipeline_node, generation_check

GENERATION_OUTPUTS = {"image": "image", "images": "images", "latents": "latents"}



@dataclass(frozen=True)
class GenerationSpec:
    """How a generation node type drives diffusers. runner.models reads these facts; it never looks at type names.

    To add a generation node type: declare its fields (a Generation subclass) and one spec, then `_declare` it.
    Which pipeline runs for a task, on which checkpoints, is the model family's to say (runner.models.families).
    """

    # the generation task, as model families name what they do: text2image, image2image, inpainting, depth2image,
    # refining, interpolation (words of their own: the models layer never compares node type names)
    task: str
    # call arguments made from the node's linked inputs: inputs(ctx, fields) -> {argument: value}
    inputs: Callable[[Any, Any], dict[str, Any]]
    # the call argument taking ControlNet conditions; None: the node takes no ControlNets
    controlnet_condition: str | None = None
    # inpaint nodes may leave out a ControlNet image: the inpaint condition is built from image and mask
    builds_inpaint_condition: bool = False
    # without width/height, generate at the input image's size (diffusers would fall back to the model's default)
    size_from_image: bool = False
    arguments: dict[str, str] = field(default_factory=lambda: dict(CALL_ARGUMENTS))
    # `inputs` for an export script (`runner export`): export_inputs(script, fields) -> {argument: Python source}
    export_inputs: Callable[[Any, Any], dict[str, str]] | None = None
    # controlnet item field -> call argument
    controlnet_arguments: dict[str, str] = field(default_factory=lambda: dict(CONTROLNET_ITEM_ARGUMENTS))


def _no_inputs(ctx, f) -> dict[str, Any]:
    return {}


def _image_input(ctx, f) -> dict[str, Any]:
    if getattr(f, "latents", None) is not None:
        return {"image": ctx.load(f.latents)}  # diffusers' img2img and inpaint take 4-channel latents as `image`
    return {"image": ctx.load(f.image).convert("RGB")}


def _inpaint_inputs(ctx, f) -> dict[str, Any]:
    from .images import mask_coverage

    mask = ctx.load(f.mask).convert("L")
    coverage = mask_coverage(mask)
    if coverage == "empty" and getattr(f, "padding_mask_crop", None) is not None:
        from ..models.errors import NodeInputError

        raise NodeInputError(f"padding_mask_crop: its mask ({f.mask}) has no white area, so there is no area to crop "
                             "to (diffusers would fail dividing by its size)",
                             "draw the area to repaint in white, or remove padding_mask_crop")
    if coverage == "empty":
        ctx.warn(f"its mask ({f.mask}) has no white area: nothing is repainted, yet every denoising step runs and the "
                 "result is the input again (through the VAE); draw the area to repaint in white")
    elif coverage == "full":
        ctx.warn(f"its mask ({f.mask}) is all white: the whole image is repainted and nothing of it is kept "
                 "(img2img with a strength keeps its composition)")
    return {**_image_input(ctx, f), "mask_image": mask}


def _depth2img_inputs(ctx, f) -> dict[str, Any]:
    arguments = _image_input(ctx, f)
    if f.depth is not None:
        from ..models.generate import depth_tensor

        arguments["depth_map"] = depth_tensor(ctx.load(f.depth))
    return arguments


def _refine_inputs(ctx, f) -> dict[str, Any]:
    if f.latents is None:
        return _image_input(ctx, f)
    arguments: dict[str, Any] = {"image": ctx.load(f.latents)}  # diffusers' img2img takes latents as `image`
    if f.denoising_start is not None:
        arguments["denoising_start"] = f.denoising_start
    return arguments


def _no_inputs_source(script, f) -> dict[str, str]:
    return {}


def _image_input_source(script, f) -> dict[str, str]:
    if getattr(f, "latents", None) is not None:
        return {"image": script.ref(f.latents)}
    return {"image": script.image(f.image, "RGB")}


def _inpaint_inputs_source(script, f) -> dict[str, str]:
    return {**_image_input_source(script, f), "mask_image": script.image(f.mask, "L")}


def _depth2img_inputs_source(script, f) -> dict[str, str]:
    arguments = _image_input_source(script, f)
    if f.depth is not None:
        script.need("import numpy as np")
        arguments["depth_map"] = (f'torch.from_numpy(np.asarray({script.image(f.depth, "L")}, dtype=np.float32)[None])'
                                  "  # near = bright, (1, H, W)")
    return arguments


def _refine_inputs_source(script, f) -> dict[str, str]:
    if f.latents is None:
        return _image_input_source(script, f)
    arguments = {"image": script.ref(f.latents)}
    if f.denoising_start is not None:
        arguments["denoising_start"] = script.expr("denoising_start")
    return arguments


TXT2IMG = GenerationSpec("text2image", _no_inputs, controlnet_condition="image", export_inputs=_no_inputs_source)
IMG2IMG = GenerationSpec("image2image", _image_input, controlnet_condition="control_image",
                         export_inputs=_image_input_source)
INPAINT = GenerationSpec("inpainting", _inpaint_inputs, controlnet_condition="control_image", builds_inpaint_condition=True,
                         size_from_image=True, export_inputs=_inpaint_inputs_source)
DEPTH2IMG = GenerationSpec("depth2image", _depth2img_inputs, export_inputs=_depth2img_inputs_source)
REFINE = GenerationSpec("refining", _refine_inputs, export_inputs=_refine_inputs_source)


def _interpolation_items(ctx, f) -> dict[str, Any]:
    """The items to blend, in order: prompts as text, images loaded (not call arguments: the family's prior takes them)."""
    return {"conditions": [item.prompt if item.prompt is not None else ctx.load(item.image).convert("RGB")
                           for item in f.items]}


INTERPOLATE = GenerationSpec("interpolation", _interpolation_items)
GENERATION_SPECS = (TXT2IMG, IMG2IMG, INPAINT, DEPTH2IMG, REFINE)


class Lora(Fields):
    model: model_in("lora") = Field(..., description="LoRA weights: $models.NAME or a source")
    scale: float = Field(1.0, ge=-10, le=10, description="adapter weight")


class ControlNet(Fields):
    model: model_in("controlnet") = Field(..., description="ControlNet model: $models.NAME or a source")
    image: ImageIn | None = Field(None, description="condition image (edges, depth, pose, ...); on inpaint nodes it may be "
                                                  "left out: the inpaint condition is built from the node's image and mask")
    scale: float | None = Field(None, ge=0, le=5, description="controlnet_conditioning_scale; default: the pipeline's")
    start: float | None = Field(None, ge=0, le=1, description="control_guidance_start: fraction of steps before the net "
                                "applies; default: the pipeline's")
    end: float | None = Field(None, ge=0, le=1, description="control_guidance_end: fraction of steps after which it stops; "
                              "default: the pipeline's")

    @model_validator(mode="after")
    def _ordered(self):
        start = 0.0 if self.start is None else self.start  # every diffusers ControlNet pipeline's defaults
        end = 1.0 if self.end is None else self.end
        if start >= end:
            raise Invalid(f"start ({start}) must be below end ({end})",
                          "start and end are fractions of the steps (0 to 1): the ControlNet applies from start to end, "
                          f"e.g. start: {min(start, end)}, end: {max(start, end)}" if start != end else
                          "start and end are fractions of the steps (0 to 1): give end a larger value than start")
        return self


class IPAdapter(Fields):
    model: model_in("ip_adapter") = Field(
        ..., description="IP-Adapter weights (the original image_proj/ip_adapter layout): a .safetensors file (bare "
                         "names from the model folders' ipadapter/), a folder or hub repository holding one (its "
                         "model entry's subfolder: and weight_name: pick it, e.g. h94/IP-Adapter, subfolder models, "
                         "weight_name ip-adapter_sd15.safetensors), or tiny:ip-adapter-sd15")
    image: ImageIn | list[ImageIn] = Field(..., description="the image prompt (a list: several images for this adapter)")
    scale: float | dict[str, Any] | None = Field(
        None, description="set_ip_adapter_scale: a number (0: no effect, 1: full), or diffusers' per-block dict, e.g. "
                          "{up: {block_0: [0.0, 1.0, 0.0]}} (InstantStyle: style only); default: diffusers' (1.0)")
    mask: MaskIn | None = Field(None, description="where this image prompt applies (white), through diffusers' "
                                                  "IPAdapterMaskProcessor; default: the whole image")
    image_encoder: model_in("image_encoder") | None = Field(
        None, description="the CLIP image encoder; default: the image_encoder/ folder beside the weights, as diffusers "
                          "loads it (h94/IP-Adapter's models/image_encoder); a folder, a hub id, an IP-Adapter whose "
                          "image_encoder/ to use, or for a file from ComfyUI's ipadapter/ one from clip_vision/")

    @model_validator(mode="after")
    def _scale(self):
        if isinstance(self.scale, (int, float)) and not 0 <= self.scale <= 10:
            raise Invalid(f"scale {self.scale:g} is outside 0 to 10", "use 0 (off) to 1 (full), or a little above")
        if isinstance(self.scale, dict) and not set(self.scale) <= {"down", "mid", "up"}:
            raise Invalid(f"a per-block scale names down, mid and up, not {', '.join(sorted(set(self.scale) - {'down', 'mid', 'up'}))}",
                          "e.g. scale: {up: {block_0: [0.0, 1.0, 0.0]}}")
        return self


class T2IAdapterItem(Fields):
    model: model_in("adapter") = Field(..., description="T2I-Adapter: $models.NAME or a source (e.g. "
                                                          "TencentARC/t2iadapter_canny_sd15v2; tiny:t2i-adapter-sd15)")
    image: ImageIn = Field(..., description="condition image (edges, depth, sketch, pose), made grey or colour as "
                                            "the adapter takes it (its in_channels)")
    scale: float | None = Field(None, ge=0, le=5, description="adapter_conditioning_scale; default: the pipeline's (1.0)")


SCHEDULER_DOC = "sampler by short name; default: the checkpoint's own"


def _schedulers_of(spec: GenerationSpec) -> Any:
    """A node type's `scheduler:`: the short names some model family doing its task runs with (validation refuses
    the others on every family, so the schema and `runner nodes` never offer them), in SCHEDULERS' order."""
    from ..models import families

    offered = families.scheduler_names(spec.task)
    return Literal[tuple(name for name in SCHEDULERS if name in offered)] | None  # type: ignore[valid-type]


# the scheduler names each generation node type offers
TXT2IMG_SCHEDULERS = _schedulers_of(TXT2IMG)
IMG2IMG_SCHEDULERS = _schedulers_of(IMG2IMG)
INPAINT_SCHEDULERS = _schedulers_of(INPAINT)
DEPTH2IMG_SCHEDULERS = _schedulers_of(DEPTH2IMG)
REFINE_SCHEDULERS = _schedulers_of(REFINE)
INTERPOLATE_SCHEDULERS = _schedulers_of(INTERPOLATE)


class CoreGeneration(Fields):
    """The fields every generation node takes, interpolate's included. LoRA, size and ControlNet fields come with the
    node types whose pipelines take them (Generation, SizedGeneration, ControlledGeneration): a field is offered only
    where some pipeline of the node uses it."""

    model: ModelIn = Field(..., description="checkpoint: $models.NAME or a source (hub id, folder, .safetensors, tiny:NAME)")
    prompt: str = Field("", description="what to generate; ${params.x} interpolates")
    negative_prompt: str | None = Field(None, description="what to avoid")
    steps: int | None = Field(None, ge=1, le=1000, description="num_inference_steps; default: the pipeline's")
    guidance_scale: float | None = Field(None, ge=0, le=100, description="classifier-free guidance; default: the pipeline's")
    seed: Seed | None = Field(None, description="noise seed; default: derived from the workflow seed and the node id; 'random' draws one")
    scheduler: SchedulerName | None = Field(None, description=SCHEDULER_DOC)  # each node type offers its own
    num_images: int = Field(1, ge=1, le=64, description="num_images_per_prompt")
    pipeline_kwargs: dict[str, Any] = Field(default_factory=empty_dict, description="extra keyword arguments for the diffusers call")
    offload: Offload | None = Field(None, description="CPU offload on CUDA: none | model | sequential | group; default: the workflow's "
                                                      "'offload'; ignored with a warning on CPU")
    attention_slicing: bool = Field(False, description="compute attention in slices (less memory, a little slower)")
    vae_tiling: bool = Field(False, description="decode/encode with the VAE in tiles (large images in less memory)")

    spec: ClassVar[GenerationSpec | None] = None


class Generation(CoreGeneration):
    """The generation nodes whose pipelines load LoRAs (the family's permitting) and take the run-time options
    (interpolate's Kandinsky families apply none of them: it offers none)."""

    lora: list[Lora] = Field(default_factory=empty_list, description="LoRA adapters applied for this node")
    vae_slicing: Annotated[bool | None, KeyedWhenSet()] = Field(
        None, description="decode a batch of images one at a time (the VAE's enable_slicing: less memory); default: "
                          "the workflow's vae_slicing, else off")
    channels_last: Annotated[bool | None, KeyedWhenSet()] = Field(
        None, description="the denoiser and VAE in channels-last memory format for the call (faster convolutions on "
                          "CUDA); default: the workflow's channels_last, else off")
    attention: Annotated[Attention | None, KeyedWhenSet()] = Field(
        None, description="the denoiser's attention backend for the call (diffusers' set_attention_backend: native is "
                          "PyTorch's SDPA; flash, sage, xformers need CUDA and their packages); default: the "
                          "workflow's attention, else the model's own")
    compile: Annotated[Compile | None, KeyedWhenSet()] = Field(
        None, description="torch.compile of the denoiser for the call: true, or {mode: max-autotune, fullgraph: true}; "
                          "compiled once per Session and reused (the first call pays for it); default: the workflow's "
                          "compile, else off")
    quantize: Annotated[Quantize | None, KeyedWhenSet()] = Field(
        None, description="load the checkpoint with its components quantized (diffusers' PipelineQuantizationConfig): "
                          "int8 (torchao, every device), fp8 (torchao, CUDA) or nf4 (bitsandbytes, CUDA) for the "
                          "denoiser, or {denoiser: int8, text_encoders: int8}; another model than the plain one, loaded "
                          "beside it; default: the workflow's quantize, else none")


# on the node types whose pipelines encode the prompt with CLIP themselves (not interpolate: its prior does)
ClipSkip = Annotated[int | None, KeyedWhenSet(), Field(
    ge=1, le=24, description="layers of the CLIP text encoder to skip from the end (1: the penultimate layer's output, "
                             "as A1111's 'CLIP skip 2'); default: none skipped")]


SIZE_DOC = "pixels, multiple of 8; default: the model's"


class SizedGeneration(Generation):
    width: int | None = Field(None, ge=8, le=8192, multiple_of=8, description=SIZE_DOC)
    height: int | None = Field(None, ge=8, le=8192, multiple_of=8, description=SIZE_DOC)


class FreeU(Fields):
    """FreeU's factors (diffusers' enable_freeu; the FreeU authors' values for SD 1.5: s1 0.9, s2 0.2, b1 1.5, b2 1.6;
    SDXL: s1 0.6, s2 0.4, b1 1.1, b2 1.2)."""

    s1: float = Field(..., ge=0, le=10, description="scales the skip features of the first stage (below 1 damps them)")
    s2: float = Field(..., ge=0, le=10, description="scales the skip features of the second stage")
    b1: float = Field(..., ge=0, le=10, description="scales the backbone features of the first stage (above 1 amplifies)")
    b2: float = Field(..., ge=0, le=10, description="scales the backbone features of the second stage")


class ControlledGeneration(SizedGeneration):
    controlnet: list[ControlNet] = Field(default_factory=empty_list, description="ControlNets with their condition images")
    # txt2img, img2img and inpaint: the tasks transformer families (SD3, FLUX.1) do; depth2img's and refine's are UNets'
    step_cache: Annotated[StepCache | None, KeyedWhenSet()] = Field(
        None, description="a step cache for the call (SD3, FLUX.1: transformer denoisers): {type: first_block, "
                          "threshold: 0.05} or {type: taylorseer, cache_interval: 5}; default: the workflow's, else none")

    clip_skip: ClipSkip = None
    freeu: Annotated[FreeU | None, KeyedWhenSet()] = Field(
        None, description="FreeU: rescale the UNet's skip and backbone features for this node (SD, SDXL); default: off")
    pag_scale: Annotated[float | None, KeyedWhenSet()] = Field(
        None, ge=0, le=100, description="Perturbed-Attention Guidance: runs the task's PAG pipeline (enable_pag; SD, "
                                        "SDXL, SD3) with this scale; default: no PAG")
    pag_applied_layers: Annotated[list[str] | None, KeyedWhenSet()] = Field(
        None, min_length=1, description="the layers PAG perturbs: patterns over the UNet's module names, as diffusers "
                                        "takes them (e.g. ['mid'], ['down_blocks.1', 'up_blocks.0.attentions.1']); "
                                        "only with pag_scale; default: diffusers' (['mid'])")

    ip_adapter: Annotated[list[IPAdapter], KeyedWhenSet()] = Field(
        default_factory=empty_list, description="IP-Adapters: image prompts, each with its weights, image(s), scale and "
                                          "optional mask (SD, SDXL); loaded for this node only")

    @model_validator(mode="after")
    def _pag_layers_need_pag(self):
        if self.pag_applied_layers is not None and self.pag_scale is None:
            raise Invalid("pag_applied_layers is for Perturbed-Attention Guidance, which pag_scale turns on",
                          "add pag_scale (e.g. 3.0), or remove pag_applied_layers")
        return self

    @model_validator(mode="after")
    def _controlnet_images(self):
        for index, item in enumerate(self.controlnet):
            if item.image is None and not (self.spec and self.spec.builds_inpaint_condition):
                raise Invalid(f"controlnet[{index}] needs an 'image' (only inpaint nodes build one from image and mask)",
                              f"add the condition image, e.g. controlnet[{index}].image: $edges (a canny, depth or pose "
                              "node's output)")
        return self


class Txt2Img(ControlledGeneration):
    spec: ClassVar[GenerationSpec] = TXT2IMG
    scheduler: TXT2IMG_SCHEDULERS = Field(None, description=SCHEDULER_DOC)
    adapter: Annotated[list[T2IAdapterItem], KeyedWhenSet()] = Field(
        default_factory=empty_list, description="T2I-Adapters with their condition images (SD, SDXL: diffusers' adapter "
                                          "pipelines; several make a MultiAdapter); not with controlnet")
    adapter_conditioning_factor: Annotated[float | None, KeyedWhenSet()] = Field(
        None, ge=0, le=1, description="the fraction of the steps the adapters act in (SDXL's adapter pipeline); "
                                      "default: the pipeline's (1.0)")

    @model_validator(mode="after")
    def _adapter_or_controlnet(self):
        if self.adapter and self.controlnet:
            raise Invalid("a node takes T2I-Adapters or ControlNets, not both (diffusers has no pipeline for both)",
                          "keep one of adapter and controlnet, or chain two nodes (img2img with the other)")
        if self.adapter and self.pag_scale is not None:
            raise Invalid("diffusers has no Perturbed-Attention Guidance pipeline with T2I-Adapters",
                          "remove pag_scale or adapter")
        if self.adapter_conditioning_factor is not None and not self.adapter:
            raise Invalid("adapter_conditioning_factor is for T2I-Adapters", "add adapter, or remove it")
        return self


def _one_start(self):
    exactly_one({"image": self.image, "latents": self.latents})
    return self


LATENTS_DOC = ("latents of a generation node ($node.latents) instead of 'image': the stages hand over without a VAE "
               "decode and re-encode; the size comes from the latents")
# img2img's own pipelines (SD, SDXL, Kandinsky 3) make an image of the input's size; those with a ControlNet, and
# others' (SD3, FLUX, Kandinsky 2.x), take a size: validate refuses it where the pipeline that will run does not take it
RESTYLE_SIZE_DOC = ("pixels, a multiple of the model family's step; only where the pipeline takes a size (with a "
                    "ControlNet; SD3, FLUX, Kandinsky 2.x; SD, SDXL and Kandinsky 3 img2img keep the input's size: "
                    "resize the input instead); default: the input's")


class Img2Img(ControlledGeneration):
    spec: ClassVar[GenerationSpec] = IMG2IMG
    scheduler: IMG2IMG_SCHEDULERS = Field(None, description=SCHEDULER_DOC)
    width: int | None = Field(None, ge=8, le=8192, multiple_of=8, description=RESTYLE_SIZE_DOC)
    height: int | None = Field(None, ge=8, le=8192, multiple_of=8, description=RESTYLE_SIZE_DOC)
    image: ImageIn | None = Field(None, description="image to restyle (or 'latents')")
    latents: LatentsIn | None = Field(None, description=LATENTS_DOC)
    strength: float | None = Field(None, ge=0, le=1, description="how much to change: 0 keeps the image, 1 ignores it; "
                                                                  "default: the pipeline's")
    _one_start = model_validator(mode="after")(_one_start)


class Inpaint(ControlledGeneration):
    spec: ClassVar[GenerationSpec] = INPAINT
    scheduler: INPAINT_SCHEDULERS = Field(None, description=SCHEDULER_DOC)
    image: ImageIn | None = Field(None, description="image to repaint (or 'latents')")
    latents: LatentsIn | None = Field(None, description=LATENTS_DOC + " (4-channel checkpoints; no ControlNet "
                                      "inpaint condition can be built from them)")
    mask: MaskIn = Field(..., description="white = repaint, black = keep (any image; converted to one channel)")
    strength: float | None = Field(None, ge=0, le=1, description="how much the masked area changes; default: the pipeline's")
    padding_mask_crop: Annotated[int | None, KeyedWhenSet()] = Field(
        None, ge=0, le=8192, description="inpaint only the masked area: crop the image and mask to the mask's box grown "
                                         "by this margin in pixels, repaint that crop at the full size, and paste it "
                                         "back (diffusers' padding_mask_crop); default: the whole image")
    _one_start = model_validator(mode="after")(_one_start)

    @model_validator(mode="after")
    def _crop_needs_condition_images(self):
        if self.padding_mask_crop is None:
            return self
        built = [index for index, item in enumerate(self.controlnet) if item.image is None]
        if built:
            raise Invalid(f"padding_mask_crop crops the ControlNet condition too, and diffusers can crop only an image: "
                          f"controlnet[{built[0]}] has none (runner would build the inpaint condition as a tensor)",
                          f"give controlnet[{built[0]}] an image (e.g. image: $photo), or remove padding_mask_crop")
        return self


def _not_taken(pipeline: str, node: str) -> dict[str, tuple[str, str]]:
    """Why a node type whose pipelines take no size and no ControlNet has no such fields, and what to do instead."""
    size = (f"{pipeline} makes an image of its input's size",
            "remove it; to change the size, resize the input image first (load_image size: [W, H], or an upscale node)")
    return {"width": size, "height": size,
            "controlnet": (f"{pipeline} takes no ControlNet",
                           f"remove it, or do the ControlNet step in a txt2img, img2img or inpaint node before the {node}")}


class Depth2Img(Generation):
    """No size (the result has the input's) and no ControlNet: StableDiffusionDepth2ImgPipeline takes neither."""

    spec: ClassVar[GenerationSpec] = DEPTH2IMG
    scheduler: DEPTH2IMG_SCHEDULERS = Field(None, description=SCHEDULER_DOC)
    not_taken: ClassVar[dict] = _not_taken("StableDiffusionDepth2ImgPipeline", "depth2img")
    image: ImageIn = Field(..., description="image to restyle (the result has its size)")
    depth: ImageIn | None = Field(None, description="depth map; default: estimated by the model's own depth estimator")
    clip_skip: ClipSkip = None
    strength: float | None = Field(None, ge=0, le=1, description="how much to change; default: the pipeline's")


class Refine(Generation):
    """No size (the result has the input's) and no ControlNet: StableDiffusionXLImg2ImgPipeline takes neither."""

    spec: ClassVar[GenerationSpec] = REFINE
    scheduler: REFINE_SCHEDULERS = Field(None, description=SCHEDULER_DOC)
    not_taken: ClassVar[dict] = _not_taken("the SDXL refiner's pipeline (StableDiffusionXLImg2ImgPipeline)", "refine")
    image: ImageIn | None = Field(None, description="image to refine (img2img with strength)")
    latents: LatentsIn | None = Field(None, description="latents of a base node (handoff without decoding)")
    denoising_start: float | None = Field(None, gt=0, lt=1, description="with latents: fraction of the schedule already done by the base")
    clip_skip: ClipSkip = None
    strength: float | None = Field(None, ge=0, le=1, description="with image: how much to change; default: the pipeline's")
    _one_start = model_validator(mode="after")(_one_start)


class InterpolationItem(Fields):
    prompt: str | None = Field(None, description="a text to blend")
    image: ImageIn | None = Field(None, description="an image to blend")
    weight: float = Field(1.0, ge=0, description="relative weight")

    @model_validator(mode="after")
    def _one(self):
        exactly_one({"prompt": self.prompt, "image": self.image}, "an item is exactly one of 'prompt' or 'image'")
        return self


class Interpolate(CoreGeneration):
    """No LoRA: the families that interpolate (Kandinsky 2.1, 2.2) load none."""

    spec: ClassVar[GenerationSpec] = INTERPOLATE
    scheduler: INTERPOLATE_SCHEDULERS = Field(None, description=SCHEDULER_DOC)
    not_taken: ClassVar[dict] = {"lora": ("the Kandinsky prior and decoder that interpolate take no LoRA",
                                          "remove lora")}
    width: int | None = Field(None, ge=8, le=8192, multiple_of=8, description=SIZE_DOC)
    height: int | None = Field(None, ge=8, le=8192, multiple_of=8, description=SIZE_DOC)
    items: list[InterpolationItem] = Field(..., min_length=2, description="prompts and images to blend, with weights")


class Pipeline(Fields):
    class_: str = Field(..., alias="class", pattern=r"^[A-Z][A-Za-z0-9]*Pipeline$",
                        description="a diffusers pipeline class name (one diffusers exports), e.g. StableDiffusionUpscalePipeline; "
                                    "loaded with CLASS.from_pretrained(model), once per Session (a run, a sweep, a watch loop)")
    model: ModelIn = Field(..., description="checkpoint for the pipeline: $models.NAME or a source")
    call: ArgumentsWithImages = Field(default_factory=empty_dict, description="keyword arguments of the pipeline call, checked "
                                      "against its signature at validation; a value may link an image output: image: $photo")
    seed: Seed | None = Field(None, description="seeds the CPU generator passed as 'generator' (when the class takes one); "
                                                "default: derived from the workflow seed and the node id")


BATCH_VARYING = ("prompt",)  # the fields besides the seed in which tasks sharing one batched call may differ


def _declare(name: str, fields: type[Generation], doc: str) -> None:
    spec = fields.spec

    def run(ctx, f, inputs=None):
        from ..models.generate import generate

        return generate(ctx, spec, f)

    def export(script, f):
        from ..models.export_generation import export_generate

        export_generate(script, spec, f)

    def run_batch(contexts, fs, lead):
        from ..models.generate import generate_batch

        return generate_batch(contexts, spec, fs, lead, BATCH_VARYING)

    run.__doc__ = doc
    # a sweep's variants that differ only in seed and prompt share one call (a prompt list, a generator per image)
    node_type(name, fields=fields, outputs=GENERATION_OUTPUTS, check=generation_check(spec), export=export,
              batch=Batching(run_batch, varying=BATCH_VARYING))(run)


def _on(task: str, any_other: bool = False) -> str:
    """The model families that do a task, in users' words (from their declarations)."""
    from ..models import families

    names = [family.name for family in families.for_task(task)] + (["any other AutoPipeline checkpoint"] if any_other else [])
    return families.either(names)


_declare("txt2img", Txt2Img, f"Text to image ({_on(TXT2IMG.task, True)}).")
_declare("img2img", Img2Img, f"Restyle an image guided by a prompt ({_on(IMG2IMG.task, True)}).")
_declare("inpaint", Inpaint, f"Repaint the white area of a mask ({_on(INPAINT.task, True)}).")
_declare("depth2img", Depth2Img, f"Structure-preserving restyle guided by depth ({_on(DEPTH2IMG.task)} depth "
                                 "checkpoints, e.g. SD 2 depth).")
_declare("refine", Refine, "Second stage: a refiner (SDXL's) on a base's latents or on an image (runs on "
                           f"{_on(REFINE.task)} checkpoints).")


# version 2: lora left the fields (no family that interpolates takes one), so every key is another
def _export_interpolate(script, f) -> None:
    from ..models.export_generation import export_generate

    export_generate(script, INTERPOLATE, f)


@node_type("interpolate", fields=Interpolate, outputs={"image": "image"}, version=2,
           check=generation_check(INTERPOLATE, arguments=False), export=_export_interpolate)
def _run_interpolate(ctx, f, inputs=None):
    """Blend weighted prompts and images through a prior (Kandinsky 2.1 and 2.2)."""
    from ..models.generate import generate

    return generate(ctx, INTERPOLATE, f)


def _export_pipeline(script, f) -> None:
    from ..models.export_generation import export_named_pipeline

    export_named_pipeline(script, f)


@node_type("pipeline", fields=Pipeline, outputs={"image": "image", "images": "images"}, check=check_pipeline_node,
           export=_export_pipeline)
def _run_pipeline(ctx, f, inputs=None):
    """Any pipeline class diffusers exports, by name, called with `call` (no arbitrary imports)."""
    from ..models.named_pipeline import run_named_pipeline

    call = {name: _loaded(ctx, value) for name, value in f.call.items()}
    return run_named_pipeline(ctx, f.class_, f.model, call, recorded=unresolve(dict(f.call)))


def _loaded(ctx, value: Any) -> Any:
    """A link becomes the image it points to, a list of links a list of images; other values stay as written."""
    if isinstance(value, Link):
        return ctx.load(value)
    if isinstance(value, list) and value and all(isinstance(item, Link) for item in value):
        return [ctx.load(item) for item in value]
    return value
