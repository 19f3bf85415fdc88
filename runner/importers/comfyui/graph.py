"""A ComfyUI API-format prompt as runner workflow data: which runner nodes, models and fields its core nodes become.

ComfyUI's graph is a dataflow of typed values (MODEL, CLIP, CONDITIONING, LATENT, IMAGE, ...); runner's has one node
per diffusers call. So the mapping works back from each SaveImage: VAEDecode -> the sampler that made the latents,
whose inputs decide the runner node type (an EmptyLatentImage: txt2img; a VAEEncode: img2img; an inpaint encode or
noise mask: inpaint; another sampler's leftover noise: refine; its finished latents, maybe through a LatentUpscale
(upscale_latents): img2img over them) and its fields (prompts from the text encoders, read with ComfyUI's weights,
ControlNets from the apply chain, LoRAs from the loader chain). An ImageScale becomes an upscale. Plain data in and
out: no torch, no files read.

A model is identified by its loaders: the CheckpointLoaderSimple or UNETLoader that feeds the sampler, with the CLIP
loader (DualCLIPLoader, TripleCLIPLoader) that feeds its text encoders and the VAELoader that feeds its VAEEncode and
VAEDecode, where those are not the checkpoint's own: one model entry naming those parts (`text_encoder:`, ...,
`vae:`), as ComfyUI users keep FLUX.1 and SD3.5. The CLIP loader's type (flux, sd3) or a FluxGuidance tells the
family, whose samplers, sizes and guidance then apply.

Anything this module cannot map faithfully is refused (`Refused`), naming the ComfyUI node, the input and the value.
"""

from __future__ import annotations

import copy
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Callable

from ...language.fields import SCHEDULERS
from ...language.refs import RESERVED
from ...language.workflow import MAX_NODES as MAX_WORKFLOW_NODES
from ...models.families.flow import FLOW_SCHEDULERS
from ...models.prompt_weights import segments as runner_segments
from ...nodes.call_checks import EMBEDDING_REFERENCE
from ...nodes.images import LATENT_FACTOR, LATENT_METHODS, RESIZE_METHODS

# class_type -> (output types by index, {input name: a ComfyUI type for links, or int | float | str | enable})
NODE_SPECS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "CheckpointLoaderSimple": (("MODEL", "CLIP", "VAE"), {"ckpt_name": "str"}),
    "UNETLoader": (("MODEL",), {"unet_name": "str", "weight_dtype": "str"}),
    "CLIPLoader": (("CLIP",), {"clip_name": "str", "type": "str", "device": "str"}),
    "DualCLIPLoader": (("CLIP",), {"clip_name1": "str", "clip_name2": "str", "type": "str", "device": "str"}),
    "TripleCLIPLoader": (("CLIP",), {"clip_name1": "str", "clip_name2": "str", "clip_name3": "str"}),
    "VAELoader": (("VAE",), {"vae_name": "str"}),
    "LoraLoader": (("MODEL", "CLIP"), {"model": "MODEL", "clip": "CLIP", "lora_name": "str", "strength_model": "float",
                                       "strength_clip": "float"}),
    "ControlNetLoader": (("CONTROL_NET",), {"control_net_name": "str"}),
    "CLIPTextEncode": (("CONDITIONING",), {"text": "str", "clip": "CLIP"}),
    "CLIPTextEncodeSDXL": (("CONDITIONING",), {"clip": "CLIP", "width": "int", "height": "int", "crop_w": "int",
                                               "crop_h": "int", "target_width": "int", "target_height": "int",
                                               "text_g": "str", "text_l": "str"}),
    "CLIPTextEncodeSDXLRefiner": (("CONDITIONING",), {"clip": "CLIP", "ascore": "float", "width": "int", "height": "int",
                                                      "text": "str"}),
    "FluxGuidance": (("CONDITIONING",), {"conditioning": "CONDITIONING", "guidance": "float"}),
    "ControlNetApply": (("CONDITIONING",), {"conditioning": "CONDITIONING", "control_net": "CONTROL_NET",
                                            "image": "IMAGE", "strength": "float"}),
    "ControlNetApplyAdvanced": (("CONDITIONING", "CONDITIONING"), {
        "positive": "CONDITIONING", "negative": "CONDITIONING", "control_net": "CONTROL_NET", "image": "IMAGE",
        "strength": "float", "start_percent": "float", "end_percent": "float"}),
    "EmptyLatentImage": (("LATENT",), {"width": "int", "height": "int", "batch_size": "int"}),
    "EmptySD3LatentImage": (("LATENT",), {"width": "int", "height": "int", "batch_size": "int"}),
    "LoadImage": (("IMAGE", "MASK"), {"image": "str"}),
    "ImageScale": (("IMAGE",), {"image": "IMAGE", "upscale_method": "str", "width": "int", "height": "int",
                                "crop": "str"}),
    "ImageScaleBy": (("IMAGE",), {"image": "IMAGE", "upscale_method": "str", "scale_by": "float"}),
    "VAEEncode": (("LATENT",), {"pixels": "IMAGE", "vae": "VAE"}),
    "VAEEncodeForInpaint": (("LATENT",), {"pixels": "IMAGE", "vae": "VAE", "mask": "MASK", "grow_mask_by": "int"}),
    "SetLatentNoiseMask": (("LATENT",), {"samples": "LATENT", "mask": "MASK"}),
    "LatentUpscale": (("LATENT",), {"samples": "LATENT", "upscale_method": "str", "width": "int", "height": "int",
                                    "crop": "str"}),
    "LatentUpscaleBy": (("LATENT",), {"samples": "LATENT", "upscale_method": "str", "scale_by": "float"}),
    "KSampler": (("LATENT",), {"model": "MODEL", "seed": "int", "steps": "int", "cfg": "float", "sampler_name": "str",
                               "scheduler": "str", "positive": "CONDITIONING", "negative": "CONDITIONING",
                               "latent_image": "LATENT", "denoise": "float"}),
    "KSamplerAdvanced": (("LATENT",), {"model": "MODEL", "add_noise": "enable", "noise_seed": "int", "steps": "int",
                                       "cfg": "float", "sampler_name": "str", "scheduler": "str",
                                       "positive": "CONDITIONING", "negative": "CONDITIONING", "latent_image": "LATENT",
                                       "start_at_step": "int", "end_at_step": "int",
                                       "return_with_leftover_noise": "enable"}),
    "VAEDecode": (("IMAGE",), {"samples": "LATENT", "vae": "VAE"}),
    "SaveImage": ((), {"images": "IMAGE", "filename_prefix": "str"}),
}
SUPPORTED = tuple(NODE_SPECS)
# inputs ComfyUI lets a graph leave out, with the value it then uses
DEFAULTS = {("KSampler", "denoise"): 1.0, ("VAEEncodeForInpaint", "grow_mask_by"): 6,
            ("SaveImage", "filename_prefix"): "ComfyUI", ("UNETLoader", "weight_dtype"): "default",
            ("CLIPLoader", "type"): "stable_diffusion", ("CLIPLoader", "device"): "default",
            ("DualCLIPLoader", "type"): "sdxl", ("DualCLIPLoader", "device"): "default"}
# inputs that change nothing runner does: LoadImage's upload widget; the optional VAE newer ComfyUI versions give
# ControlNetApplyAdvanced (used by a few ControlNet kinds to encode the hint; diffusers' ControlNets take pixels)
IGNORED = {("LoadImage", "upload"), ("ControlNetApplyAdvanced", "vae")}
SAMPLERS = ("KSampler", "KSamplerAdvanced")
EMPTY_LATENTS = {"EmptyLatentImage": 8, "EmptySD3LatentImage": 16}  # -> the step of its sizes in ComfyUI
CLIP_LOADERS = ("CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader")
LATENT_SCALES = ("LatentUpscale", "LatentUpscaleBy")  # -> upscale_latents
IMAGE_SCALES = ("ImageScale", "ImageScaleBy")  # -> upscale
MIN_SIDE, MAX_SIDE = 8, 8192  # runner's image sides (size: [width, height])
LATENT_MIN_SIDE = 64  # LatentUpscale enlarges to at least 64 px a side


def is_ip_adapter(class_type: str) -> bool:
    """A node of the ComfyUI_IPAdapter_plus pack (IPAdapter, IPAdapterAdvanced, IPAdapterUnifiedLoader, ...)."""
    return "IPAdapter" in class_type or "IPAAdapter" in class_type or class_type == "PrepImageForClipVision"


# core nodes that load and run the image encoder an IP-Adapter takes: refused as part of it where one is in the graph
CLIP_VISION = ("CLIPVisionLoader", "CLIPVisionEncode")

# The families a CLIP loader's type names (a FluxGuidance says flux too): their name, and the text encoders runner's
# model of that family takes, as (model entry field, what the file is) in the entry's order
FAMILIES = {"flux": "FLUX.1", "sd3": "SD3 / SD3.5"}
TEXT_ENCODERS = {
    "flux": (("text_encoder", "clip_l"), ("text_encoder_2", "t5")),
    "sd3": (("text_encoder", "clip_l"), ("text_encoder_2", "clip_g"), ("text_encoder_3", "t5")),
}
# what a text encoder file is, from a word in its name (ComfyUI users load them in either order), for messages
TEXT_ENCODER_NAMES = {"t5": "T5-XXL", "clip_l": "CLIP-L", "clip_g": "CLIP-G"}
# the CLIP loaders that load a family's text encoders, for the hints
CLIP_LOADER_HINT = {"flux": "DualCLIPLoader with type flux (clip_l and t5xxl)",
                    "sd3": "TripleCLIPLoader (clip_l, clip_g and t5xxl)"}
# VAELoader names that are no file: ComfyUI's approximate TAESD decoders and the no-VAE choice
BUILT_IN_VAES = ("taesd", "taesdxl", "taesd3", "taef1", "pixel_space")
# FLUX.1 in ComfyUI without a FluxGuidance (and diffusers' FluxPipeline default)
FLUX_GUIDANCE_DEFAULT = 3.5

# ComfyUI sampler_name -> runner scheduler, with a uniform spacing (ComfyUI's normal, simple or sgm_uniform) ...
UNIFORM = ("normal", "simple", "sgm_uniform")
SAMPLER_NAMES = {
    "euler": "euler", "euler_ancestral": "euler_a", "heun": "heun", "dpm_2": "kdpm2", "dpm_2_ancestral": "kdpm2_a",
    "dpmpp_2m": "dpmpp_2m", "dpmpp_2m_sde": "dpmpp_2m_sde", "dpmpp_2m_sde_gpu": "dpmpp_2m_sde", "ddim": "ddim",
    "ddpm": "ddpm", "deis": "deis", "lcm": "lcm", "uni_pc": "unipc", "uni_pc_bh2": "unipc",
}
# ... and with other ComfyUI schedulers where runner has the same sigmas
SPECIAL_SCHEDULES = {("dpmpp_2m", "karras"): "dpmpp_2m_karras", ("dpmpp_2m_sde", "karras"): "dpmpp_2m_sde_karras",
                     ("dpmpp_2m_sde_gpu", "karras"): "dpmpp_2m_sde_karras", ("ddim", "ddim_uniform"): "ddim"}
assert set(SAMPLER_NAMES.values()) | set(SPECIAL_SCHEDULES.values()) <= set(SCHEDULERS)
# on the flow-matching families (FLUX.1, SD3): runner has only these samplers there, with the checkpoint's spacing
FLOW_SAMPLER_NAMES = {"euler": "euler", "dpmpp_2m": "dpmpp_2m", "uni_pc": "unipc", "uni_pc_bh2": "unipc"}
assert set(FLOW_SAMPLER_NAMES.values()) <= set(FLOW_SCHEDULERS)

# runner's bounds where they are narrower than ComfyUI's (refused with the value rather than written invalid)
MAX_STEPS, MAX_SEED, MAX_CONTROLNET_SCALE, MAX_CFG = 1000, 2**63 - 1, 5.0, 100.0
# the most nodes on one path of links from a SaveImage back to a loader: the walk back recurses along such a path (a
# few Python frames a node), so a longer one is refused before it starts; real graphs are a few dozen nodes deep
MAX_CHAIN = 100
# a number of more digits than this is shown shortened in a message (its first digits and its count of digits)
SHOWN_DIGITS = 24
# diffusers' SDXL refiner call defaults (an aesthetic score equal to them is not written)
AESTHETIC_DEFAULT, NEGATIVE_AESTHETIC_DEFAULT = 6.0, 2.5


def scheduler_for(sampler_name: str, scheduler: str, flow: bool = False) -> str | None:
    """runner's scheduler for ComfyUI's sampler and scheduler (`flow`: on FLUX.1 or SD3), or None."""
    if flow:
        return FLOW_SAMPLER_NAMES.get(sampler_name) if scheduler in UNIFORM else None
    if (sampler_name, scheduler) in SPECIAL_SCHEDULES:
        return SPECIAL_SCHEDULES[sampler_name, scheduler]
    if scheduler in UNIFORM:
        return SAMPLER_NAMES.get(sampler_name)
    return None


def supported_schedules(flow: bool = False) -> str:
    if flow:
        return f"{', '.join(FLOW_SAMPLER_NAMES)} with {', '.join(UNIFORM)}"
    uniform = ", ".join(SAMPLER_NAMES)
    special = "; ".join(f"{s} with {c} -> {r}" for (s, c), r in SPECIAL_SCHEDULES.items())
    return f"{uniform} with {', '.join(UNIFORM)}; {special}"


class Refused(Exception):
    """The graph (or one node of it) has no faithful runner equivalent."""

    def __init__(self, message: str, hint: str = ""):
        message, hint = _short_numbers(message), _short_numbers(hint)  # a 400-digit input is no line to read
        super().__init__(message)
        self.message, self.hint = message, hint


def _short_numbers(text: str) -> str:
    """Every run of more than SHOWN_DIGITS digits as its first 20 and its count: 12345678901234567890... (351 digits)."""
    return re.sub(r"\d{%d,}" % (SHOWN_DIGITS + 1), lambda m: f"{m[0][:20]}... ({len(m[0]):,} digits)", text)


@dataclass
class ComfyNode:
    id: str
    class_type: str
    inputs: dict[str, Any]

    def __str__(self) -> str:
        return f"node {self.id} ({self.class_type})"


@dataclass(frozen=True)
class Use:
    """A link to a runner node (by its key until the node ids are chosen); `output` None is its default output."""

    key: tuple
    output: str | None = None


@dataclass
class RunnerNode:
    key: tuple
    preferred: str  # the id it gets unless another node wants the same
    comfy: list[str]  # the ComfyUI nodes it comes from, for its comment
    body: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class Generation:
    key: tuple
    batch: int
    size: tuple[int, int] | None  # (width, height) when known from an EmptyLatentImage
    checkpoint: str  # ComfyUI id of the CheckpointLoaderSimple or UNETLoader
    stopped_at: float | None  # fraction of the schedule where it stopped, leaving noise; None: fully denoised
    family: str | None = None  # "flux", "sd3", or None for SD / SDXL


@dataclass
class Latent:
    kind: str  # "empty" | "image" | "latents"
    comfy: list[str]
    width: int = 0
    height: int = 0
    batch: int = 1
    image: Use | None = None
    mask: Use | None = None
    previous: Generation | None = None  # kind "latents": the sampler that made them
    node: ComfyNode | None = None  # the empty latent, or the VAEEncode / VAEEncodeForInpaint of the image
    latents: Use | None = None  # kind "latents": what the next node's `latents:` names (a sampler, an upscale_latents)
    size: tuple[int, int] | None = None  # kinds "latents" and "image": the (width, height) they decode to, if known


@dataclass
class Conditioning:
    encoder: ComfyNode
    controlnets: list[ComfyNode]  # ControlNetApply / ControlNetApplyAdvanced, innermost first
    guidance: list[ComfyNode] = field(default_factory=list)  # FluxGuidance, nearest the sampler (which counts) first


@dataclass
class Imported:
    """The workflow as plain data, and what the YAML's comments should say."""

    models: dict[str, str | dict[str, str]]  # name -> source, or {source, text_encoder..., vae} when it names parts
    model_kinds: dict[str, str]  # name -> what ComfyUI loaded it as (and its ComfyUI names when they have folders)
    nodes: list[tuple[str, RunnerNode]]  # (id, node) in a readable order
    skipped_keys: list[str]  # top-level entries that are no nodes
    unused: list[str]  # ComfyUI nodes no SaveImage needs (ComfyUI would not run them either)
    images: list[tuple[str, str]]  # (written path, what ComfyUI named) of every LoadImage
    notes: list[str]


def check_graph(nodes: dict[str, ComfyNode]) -> list[Refused]:
    """Every node a supported class with its inputs present, of the right kinds, links to outputs of the right type."""
    problems: list[Refused] = []
    unsupported = [node for node in nodes.values() if node.class_type not in NODE_SPECS]
    ip_adapter = any(is_ip_adapter(node.class_type) for node in unsupported)
    for node in unsupported:
        if is_ip_adapter(node.class_type) or (ip_adapter and node.class_type in CLIP_VISION):
            what = "an IP-Adapter node" if is_ip_adapter(node.class_type) else "the image encoder of an IP-Adapter"
            problems.append(Refused(f"{node}: not one of the ComfyUI core nodes runner imports: {what} (image prompts, "
                                    "ComfyUI_IPAdapter_plus), and runner does not import IP-Adapter nodes yet",
                                    "remove the IP-Adapter nodes in ComfyUI (connect the checkpoint's MODEL output "
                                    "straight to the KSampler) and export again with Save (API); the image prompt is "
                                    "then left out"))
            continue
        problems.append(Refused(f"{node}: not one of the ComfyUI core nodes runner imports",
                                f"runner imports graphs made of {', '.join(SUPPORTED)}; replace or remove this node "
                                "in ComfyUI and export again with Save (API)"))
    for node in nodes.values():
        if node.class_type not in NODE_SPECS:
            continue
        _outputs, spec = NODE_SPECS[node.class_type]
        for name in node.inputs:
            if name not in spec and (node.class_type, name) not in IGNORED:
                problems.append(Refused(f"{node}: input '{name}' is not one runner can import",
                                        f"{node.class_type} inputs runner imports: {', '.join(spec)}"))
        for name, kind in spec.items():
            if name not in node.inputs:
                if (node.class_type, name) not in DEFAULTS:
                    problems.append(Refused(f"{node}: input '{name}' is missing",
                                            "export the graph again with Save (API) from a ComfyUI that runs it"))
                continue
            problem = _input_problem(nodes, node, name, kind, node.inputs[name])
            if problem:
                problems.append(problem)
    return problems


def _input_problem(nodes: dict[str, ComfyNode], node: ComfyNode, name: str, kind: str, value: Any) -> Refused | None:
    where = f"{node}: input '{name}'"
    if kind.isupper():  # a link to another node's output of that type
        if not is_link(value):
            return Refused(f"{where} should be a link to a {kind} output, got {_shown(value)}")
        source_id, index = str(value[0]), value[1]
        source = nodes.get(source_id)
        if source is None:
            return Refused(f"{where} links to node {source_id}, which the graph does not have")
        if source.class_type not in NODE_SPECS:
            return None  # refused already, by name
        outputs = NODE_SPECS[source.class_type][0]
        if not 0 <= index < len(outputs) or outputs[index] != kind:
            got = outputs[index] if 0 <= index < len(outputs) else f"no output {index}"
            return Refused(f"{where} takes {kind} but links to {source} output {index} ({got})")
        return None
    if is_link(value):
        return Refused(f"{where} is a link to node {value[0]}; runner imports a value written in the node here",
                       "convert the input back to a widget in ComfyUI (or set the value) and export again")
    if kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
        return Refused(f"{where} should be a whole number, got {_shown(value)}")
    if kind == "float" and not (isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)):
        return Refused(f"{where} should be a number, got {_shown(value)}"
                       + (", more than a float holds (about 1.8e308)" if isinstance(value, int) else ""))
    if kind == "str" and not isinstance(value, str):
        return Refused(f"{where} should be text, got {_shown(value)}")
    if kind == "enable" and value not in ("enable", "disable"):
        return Refused(f"{where} should be 'enable' or 'disable', got {_shown(value)}")
    return None


def longest_chain_problem(nodes: dict[str, ComfyNode], saves: list[ComfyNode]) -> Refused | None:
    """A cycle, or a path of links longer than MAX_CHAIN nodes, back from a SaveImage: found with a loop (depth-first,
    each node's longest path back remembered) before the walk recurses along it."""
    longest: dict[str, int] = {}  # node id -> the most nodes on a path from it back along its links, itself included

    def links(node_id: str) -> list[str]:
        return [str(v[0]) for v in nodes[node_id].inputs.values() if is_link(v) and str(v[0]) in nodes]

    for save in saves:
        path, pending = [save.id], [links(save.id)]  # the path from the SaveImage; each node's links not yet followed
        while path:
            if len(path) > MAX_CHAIN:
                shown = " <- ".join(str(nodes[i]) for i in path[:2]) + " <- ... <- " + str(nodes[path[-1]])
                return Refused(f"{save}: a path of links back from it passes more than {MAX_CHAIN} nodes ({shown}); "
                               f"runner imports graphs at most {MAX_CHAIN} nodes deep",
                               "shorten the chain in ComfyUI (fewer samplers or loaders one after another)")
            if pending[-1]:
                source = pending[-1].pop()
                if source in path:
                    return Refused(f"{nodes[source]} depends on its own output: the graph has a cycle")
                if source in longest:
                    if len(path) + longest[source] > MAX_CHAIN:
                        path.append(source)  # and the longest path from it, for the message
                        while len(path) <= MAX_CHAIN:
                            path.append(max(links(path[-1]), key=lambda i: longest[i]))
                    continue
                path.append(source)
                pending.append(links(source))
                continue
            node_id = path.pop()
            pending.pop()
            longest[node_id] = 1 + max((longest[i] for i in links(node_id)), default=0)
    return None


def is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool) and isinstance(value[1], int) and not isinstance(value[1], bool))


def _finite(number: int | float) -> bool:
    """A float that is neither infinite nor NaN, or an int a float holds (math.isfinite raises OverflowError on a
    bigger one)."""
    return math.isfinite(number) if isinstance(number, float) else abs(number) <= sys.float_info.max


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return _short_numbers(str(value))
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _quoted(text: str) -> str:
    """A prompt in quotes as it is written (backslashes not doubled), on one line, shortened."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return "'" + (text if len(text) <= 80 else text[:77] + "...") + "'"


def model_name(file_name: str) -> str:
    """A model entry's name from its file: the stem, lower-cased, every run of other characters one `_` (none at the
    ends: v1-5-pruned-emaonly.safetensors -> v1_5_pruned_emaonly); a leading `_` where it would start with a digit."""
    stem = PurePosixPath(bare_file_name(file_name)).stem
    name = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    if not name:
        return "model"
    return "_" + name if name[0].isdigit() else name


def bare_file_name(comfy_name: str) -> str:
    """ComfyUI names model files by their path below its model folder (SDXL/x.safetensors, or SDXL\\x on Windows)."""
    return PurePosixPath(comfy_name.replace("\\", "/")).name


def text_encoder_kind(comfy_name: str) -> str | None:
    """What a text encoder file is from its name: "t5" (T5-XXL), "clip_l" or "clip_g" (TEXT_ENCODER_NAMES); None
    where the name says none of them, or more than one."""
    stem = PurePosixPath(bare_file_name(comfy_name)).stem.lower().replace("-", "_").replace(" ", "_")
    found = [kind for kind in TEXT_ENCODER_NAMES if kind in stem]
    return found[0] if len(found) == 1 else None


def loaded_image_name(comfy_name: str) -> str:
    """LoadImage's value: a file in ComfyUI's input folder, maybe in a subfolder, maybe annotated ' [input]'."""
    return re.sub(r" \[(input|output|temp)\]$", "", comfy_name).replace("\\", "/")


def escaped(text: str) -> str:
    """Text as runner reads it literally: `$` starts references there, `$$` is a `$`."""
    return text.replace("$", "$$")


def node_order(node_id: str) -> tuple:
    """Numeric ids in numeric order (compared as digit strings: int() refuses 5,000 digits, and other scripts' digits
    such as '²', which isdigit() accepts), then the others by name."""
    if node_id.isascii() and node_id.isdigit():
        digits = node_id.lstrip("0")
        return (0, len(digits), digits, node_id)
    return (1, 0, node_id, node_id)


# ComfyUI's `embedding:` references in a prompt fragment: at its start or after a space or a line break, the name up to
# the next white space (comfy/sd1_clip.py)
COMFY_EMBEDDING = re.compile(r"(?:(?<=\s)|^)embedding:(\S*)")


def comfy_segments(text: str) -> list[tuple[str, float]]:
    """ComfyUI's reading of a prompt's weights (comfy/sd1_clip.py: token_weights), as [(text, weight)] with runs of one
    weight merged: `(text)` weighs 1.1 times the weight around it, `(text:w)` w (an explicit weight is not multiplied
    by the brackets around it), `\\(` and `\\)` are the brackets themselves; square brackets are text, and so is a
    bracket left open."""
    escaped = text.replace("\\)", "\0\1").replace("\\(", "\0\2")
    pairs = _token_weights(escaped, 1.0)
    return _normal((part.replace("\0\1", ")").replace("\0\2", "("), weight) for part, weight in pairs)


def _top_level(text: str) -> list[str]:
    """The prompt cut where ComfyUI cuts it: each outermost "(...)" group a piece, the text between them a piece (a
    ")" with nothing open is text, and the "(" after it then opens nothing either)."""
    pieces: list[str] = []
    piece: list[str] = []
    depth = 0
    for char in text:
        if char == "(" and depth == 0:
            if piece:
                pieces.append("".join(piece))
            piece, depth = ["("], 1
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                pieces.append("".join(piece) + ")")
                piece = []
                continue
        piece.append(char)
    if piece:
        pieces.append("".join(piece))
    return pieces


def _token_weights(text: str, weight: float, out: list | None = None) -> list[tuple[str, float]]:
    """[(text, weight)] as ComfyUI weighs the prompt: a group multiplies the weight around it by 1.1, or, ending in
    ":NUMBER" after some text, sets it to that number; groups are read again inside."""
    out = [] if out is None else out
    for piece in _top_level(text):
        if len(piece) > 1 and piece[0] == "(" and piece[-1] == ")":
            body, inner = piece[1:-1], weight * 1.1
            head, colon, tail = body.rpartition(":")
            if colon and head:
                try:
                    inner, body = float(tail), head
                except ValueError:
                    pass
            _token_weights(body, inner, out)
        else:
            out.append((piece, weight))
    return out


def _normal(pairs) -> list[tuple[str, float]]:
    """[(text, weight)] without empty texts, weights rounded to 6 places (as runner's reading does), neighbours of one
    weight joined: two readings compare equal when they weigh the same characters the same."""
    out: list[list] = []
    for part, weight in pairs:
        if not part:
            continue
        weight = round(weight, 6) if math.isfinite(weight) else weight
        if out and out[-1][1] == weight:
            out[-1][0] += part
        else:
            out.append([part, weight])
    return [(part, weight) for part, weight in out]


def runner_form(pairs: list[tuple[str, float]]) -> str:
    """The prompt in runner's weighted syntax that reads as these (text, weight) runs: brackets and backslashes
    escaped, each weighted run as (text:w)."""
    out = []
    for part, weight in pairs:
        part = part.replace("\\", "\\\\")
        for char in "()[]":
            part = part.replace(char, "\\" + char)
        out.append(part if weight == 1.0 else f"({part}:{_number(weight)})")
    return "".join(out)


def _number(value: float) -> str:
    """A weight as runner's syntax reads it: digits and a point, at most 6 places (1.21, 0.5, 2)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


class GraphMapping:
    """One import: walk back from every SaveImage, building runner nodes on the way."""

    def __init__(self, nodes: dict[str, ComfyNode], image_path: Callable[[str], str]):
        self.nodes = nodes
        self.image_path = image_path  # ComfyUI LoadImage name -> load_image path (relative to the output file)
        # (kind, ComfyUI file name, parts: (entry field, ComfyUI file name, loader) ...) -> model name
        self.models: dict[tuple[str, str, tuple], str] = {}
        self.runner_nodes: dict[tuple, RunnerNode] = {}
        self.generations: dict[str, Generation] = {}
        self.in_progress: set[str] = set()
        self.used: set[str] = set()
        self.needed: set[str] = set()  # the nodes some SaveImage depends on (what ComfyUI would run)
        self.images: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.upscaled: dict[str, Latent] = {}  # LatentUpscale(By) id -> the latents it gives
        self.image_sizes: dict[str, tuple[int, int] | None] = {}  # ImageScale(By) id -> (width, height) if known
        self.embeddings: dict[str, dict[str, str]] = {}  # model name -> {token: file} its prompts name
        self.decodes: dict[str, list[ComfyNode]] | None = None  # sampler id -> the needed VAEDecodes of its latents

    # ------------------------------------------------------------------ the walk
    def run(self) -> list[Refused]:
        problems: list[Refused] = []
        saves = sorted((n for n in self.nodes.values() if n.class_type == "SaveImage"), key=lambda n: node_order(n.id))
        if not saves:
            problems.append(Refused("the graph has no SaveImage node: nothing it makes would be kept",
                                    "add a SaveImage after the VAEDecode in ComfyUI and export again"))
        self.needed = self.upstream(saves)
        too_long = longest_chain_problem(self.nodes, saves)
        if too_long:
            return problems + [too_long]
        for save in saves:
            try:
                self.save_image(save)
            except Refused as refused:
                if not any(p.message == refused.message for p in problems):
                    problems.append(refused)
        if not problems and len(self.runner_nodes) > MAX_WORKFLOW_NODES:
            problems.append(Refused(f"the graph makes {len(self.runner_nodes):,} runner nodes, more than the limit of "
                                    f"{MAX_WORKFLOW_NODES:,} nodes in a workflow",
                                    "split it into several graphs in ComfyUI (one's saved images can be the next "
                                    "one's LoadImage)"))
        return problems

    def upstream(self, nodes: list[ComfyNode]) -> set[str]:
        """The ids of `nodes` and of every node they depend on."""
        seen: set[str] = set()
        stack = [node.id for node in nodes]
        while stack:
            node_id = stack.pop()
            if node_id in seen or node_id not in self.nodes:
                continue
            seen.add(node_id)
            stack += [str(value[0]) for value in self.nodes[node_id].inputs.values() if is_link(value)]
        return seen

    def source(self, node: ComfyNode, name: str) -> tuple[ComfyNode, int]:
        value = node.inputs[name]
        return self.nodes[str(value[0])], value[1]

    def save_image(self, save: ComfyNode) -> None:
        self.used.add(save.id)
        source, _index = self.source(save, "images")
        if source.class_type == "VAEDecode":
            use, generation = self.decoded(source)
            batch = generation.batch
        else:  # LoadImage (saved as loaded), ImageScale(By)
            use, batch = self.image(save, "images"), 1
        body: dict[str, Any] = {"type": "save_image"}
        body["images" if batch > 1 else "image"] = Use(use.key, "images") if batch > 1 else use
        body["name"] = save_name(save.inputs.get("filename_prefix", DEFAULTS["SaveImage", "filename_prefix"]))
        self.add(RunnerNode(("save", save.id), "save", [f"{save.id} {save.class_type}"], body))

    def decoded(self, decode: ComfyNode) -> tuple[Use, Generation]:
        self.used.add(decode.id)
        sampler, _index = self.source(decode, "samples")
        if sampler.class_type not in SAMPLERS:
            raise Refused(f"{decode} decodes the latents of {sampler} directly: runner decodes only what a sampler made",
                          "decode the output of a KSampler")
        generation = self.generation(sampler)
        if generation.stopped_at is not None:
            raise Refused(f"{decode} decodes the latents of {sampler}, which stops at {generation.stopped_at:g} of "
                          "its schedule with leftover noise: runner decodes finished images only",
                          "set return_with_leftover_noise to disable and end_at_step to 10000, or decode the "
                          "KSamplerAdvanced that finishes the schedule")
        node = self.runner_nodes[generation.key]  # its VAE: see vae_of
        node.comfy.append(f"{decode.id} {decode.class_type}")
        return Use(generation.key), generation

    def loaded(self, load: ComfyNode, with_alpha: bool = False) -> Use:
        """The load_image node of a LoadImage (one per LoadImage; RGBA when its MASK output is used)."""
        self.used.add(load.id)
        key = ("load", load.id)
        if key not in self.runner_nodes:
            name = loaded_image_name(load.inputs["image"])
            path = self.image_path(name)
            self.images.append((path, name))
            stem = re.sub(r"[^a-z0-9]+", "_", PurePosixPath(name).stem.lower()).strip("_")
            self.add(RunnerNode(key, stem or "image", [f"{load.id} {load.class_type}"],
                                {"type": "load_image", "path": escaped(path)}))
        if with_alpha:
            self.runner_nodes[key].body["mode"] = "RGBA"
        return Use(key)

    def image(self, node: ComfyNode, name: str) -> Use:
        source, _index = self.source(node, name)
        if source.class_type == "LoadImage":
            return self.loaded(source)
        if source.class_type in IMAGE_SCALES:
            return self.scaled(source)
        return self.decoded(source)[0]  # VAEDecode: the IMAGE outputs of the supported nodes

    def image_size(self, node: ComfyNode, name: str) -> tuple[int, int] | None:
        """(width, height) of the image at `node`'s input, where the graph tells it (a LoadImage's file is not read)."""
        source, _index = self.source(node, name)
        if source.class_type in IMAGE_SCALES:
            self.scaled(source)
            return self.image_sizes[source.id]
        if source.class_type == "VAEDecode":
            return self.decoded(source)[1].size
        return None

    def scaled(self, scale: ComfyNode) -> Use:
        """The upscale node of an ImageScale / ImageScaleBy (a resize with the filter ComfyUI names), or the image
        itself where ImageScale's width and height are both 0 (ComfyUI passes it on unchanged)."""
        key = ("image", scale.id)
        if key in self.runner_nodes:
            return Use(key)
        if scale.id in self.in_progress:
            raise Refused(f"{scale} depends on its own output: the graph has a cycle")
        self.in_progress.add(scale.id)
        try:
            return self._scaled(scale, key)
        finally:
            self.in_progress.discard(scale.id)

    def _scaled(self, scale: ComfyNode, key: tuple) -> Use:
        self.used.add(scale.id)
        inputs = scale.inputs
        method = inputs["upscale_method"]
        if method not in RESIZE_METHODS:
            raise Refused(f"{scale}: upscale_method '{method}' is not one runner's upscale has",
                          f"pick one of {', '.join(RESIZE_METHODS)} in ComfyUI and export again")
        source, _index = self.source(scale, "image")
        if source.class_type == "VAEDecode":
            batch = self.decoded(source)[1].batch
            if batch > 1:
                raise Refused(f"{scale} scales the {batch} images of {source}: runner's upscale enlarges one image",
                              "make one image (batch_size 1) where it is enlarged")
        image = self.image(scale, "image")
        size = self.image_size(scale, "image")
        body: dict[str, Any] = {"type": "upscale", "image": image}
        notes: list[str] = []
        if scale.class_type == "ImageScaleBy":
            factor = inputs["scale_by"]
            if not 0 < factor <= 8:
                raise Refused(f"{scale}: scale_by {factor:g} is outside runner's range (above 0, at most 8)")
            body["scale"] = factor
            new = (max(1, round(size[0] * factor)), max(1, round(size[1] * factor))) if size else None
        else:
            width, height = inputs["width"], inputs["height"]
            if width == 0 and height == 0:  # ComfyUI passes the image on as it is
                self.image_sizes[scale.id] = size
                return image
            if inputs["crop"] != "disabled":
                raise Refused(f"{scale}: crop '{inputs['crop']}' (cut to the new aspect ratio before resizing) has no "
                              "runner equivalent: runner's upscale resizes the whole image",
                              "set crop to disabled in ComfyUI (the image is then stretched to width x height)")
            if 0 in (width, height):
                if size is None:
                    other = "width" if width == 0 else "height"
                    raise Refused(f"{scale}: {other} 0 keeps the aspect ratio of the image, whose size the graph does "
                                  f"not tell here (a LoadImage's file is read only when the workflow runs)",
                                  "set both width and height in ComfyUI")
                if width == 0:  # ComfyUI's ImageScale, to the pixel
                    width = max(1, round(size[0] * height / size[1]))
                else:
                    height = max(1, round(size[1] * width / size[0]))
                notes.append(f"size [{width}, {height}]: ComfyUI's 0 keeps the aspect ratio of the {size[0]} x "
                             f"{size[1]} image")
            for what, value in (("width", width), ("height", height)):
                if not MIN_SIDE <= value <= MAX_SIDE:
                    raise Refused(f"{scale}: {what} {value} is outside runner's {MIN_SIDE} .. {MAX_SIDE}")
            body["size"] = [width, height]
            new = (width, height)
        body["method"] = method
        self.image_sizes[scale.id] = new
        self.add(RunnerNode(key, "upscale", [f"{scale.id} {scale.class_type}"], body, notes))
        return Use(key)

    def mask(self, node: ComfyNode, name: str, grow: int) -> Use:
        load, _index = self.source(node, name)  # LoadImage output 1: the only MASK among the supported nodes
        image = self.loaded(load, with_alpha=True)
        key = ("mask", load.id, grow)
        if key not in self.runner_nodes:
            body = {"type": "make_mask", "from": image, "channel": "transparency", "threshold": 128}
            if grow:
                body["grow"] = grow
            preferred = self.runner_nodes[image.key].preferred + "_mask"
            self.add(RunnerNode(key, preferred, [f"{load.id} {load.class_type} MASK (255 - alpha; rounded as ComfyUI's "
                                                 "inpaint encode does)"], body))
        return Use(key)

    def model(self, kind: str, file_name: str, parts: tuple[tuple[str, str, str], ...] = ()) -> str:
        """`$models.NAME` of the entry for a file (`kind`: what ComfyUI loaded it as) with these parts, each (entry
        field, ComfyUI file name, the loader): one entry per combination, named after the file."""
        key = (kind, file_name, parts)
        if key not in self.models:
            base = model_name(file_name)
            name, n = base, 1
            while name in self.models.values():
                n += 1
                name = f"{base}_{n}"
            self.models[key] = name
        return "$models." + self.models[key]

    def add(self, node: RunnerNode) -> None:
        self.runner_nodes[node.key] = node

    # ------------------------------------------------------------- the samplers
    def generation(self, sampler: ComfyNode) -> Generation:
        if sampler.id in self.generations:
            return self.generations[sampler.id]
        if sampler.id in self.in_progress:
            raise Refused(f"{sampler} depends on its own output: the graph has a cycle")
        self.in_progress.add(sampler.id)
        self.used.add(sampler.id)
        try:
            generation = self._generation(sampler)
        finally:
            self.in_progress.discard(sampler.id)
        self.generations[sampler.id] = generation
        return generation

    def _generation(self, s: ComfyNode) -> Generation:
        advanced = s.class_type == "KSamplerAdvanced"
        inputs = s.inputs
        steps = inputs["steps"]
        if not 1 <= steps:
            raise Refused(f"{s}: steps {steps} is below 1")
        if steps > MAX_STEPS:  # before any division by it: a float holds no 400-digit number
            raise Refused(f"{s}: {steps} steps are more than runner's {MAX_STEPS}")
        comfy = [f"{s.id} {s.class_type}"]
        notes: list[str] = []
        if advanced:
            add_noise = inputs["add_noise"] == "enable"
            leftover = inputs["return_with_leftover_noise"] == "enable"
            start_step, end_step = inputs["start_at_step"], min(inputs["end_at_step"], steps)
            if not 0 <= start_step < end_step:
                raise Refused(f"{s}: start_at_step {inputs['start_at_step']} and end_at_step {inputs['end_at_step']} "
                              f"of {steps} step{'s' if steps > 1 else ''} leave nothing to do")
            start, end = start_step / steps, end_step / steps
            denoise = 1.0
        else:
            add_noise, leftover = True, False
            denoise = inputs.get("denoise", DEFAULTS["KSampler", "denoise"])
            if not 0 < denoise <= 1:
                raise Refused(f"{s}: denoise {denoise} is not above 0 and at most 1")
            start, end = 0.0, 1.0

        checkpoint, loras, skipped = self.model_chain(s)
        loader = self.nodes[checkpoint]
        model_kind, model_file = self.model_file(loader)
        for lora in skipped:
            comfy.append(f"{lora.id} {lora.class_type}")
            notes.append(f"{lora} ({lora.inputs['lora_name']}) has strength 0: left out, as ComfyUI skips it")
        positive = self.conditioning(s, "positive")
        negative = self.conditioning(s, "negative")
        family, text_encoders, negative_counts = self.text_encoders(s, loader, positive, negative, loras, notes)
        comfy += [f"{c.encoder.id} {c.encoder.class_type}" for c in (positive, negative)]
        comfy += [f"{g.id} {g.class_type}" for c in (positive, negative) for g in c.guidance]
        latent = self.latent(s)
        comfy += latent.comfy
        vae = self.vae_of(s, loader, latent, notes)

        body: dict[str, Any] = {}
        arguments: dict[str, Any] = {}
        size: tuple[int, int] | None = None
        batch = latent.batch
        if latent.kind == "empty":
            empty = latent.node.class_type
            if not add_noise:
                raise Refused(f"{s}: add_noise disable on an {empty} denoises nothing but zeros", "enable add_noise")
            if advanced and start_step > 0 or denoise < 1:
                what = f"start_at_step {start_step}" if advanced else f"denoise {denoise}"
                raise Refused(f"{s}: {what} on an {empty} has no runner equivalent (a text-to-image "
                              "generation runs the whole schedule)", "use denoise 1.0 (start_at_step 0) or an image input")
            for what, value in (("width", latent.width), ("height", latent.height)):
                if family and value % 16:
                    raise Refused(f"{latent.node}: {what} {value} is not a multiple of 16: {FAMILIES[family]} makes "
                                  "images in steps of 16 px", "use a multiple of 16 (EmptySD3LatentImage steps in 16s)")
            kind = "txt2img"
            size = (latent.width, latent.height)
            body.update(width=latent.width, height=latent.height)
            if batch > 1:
                body["num_images"] = batch
            runner_steps = steps
        elif latent.kind == "latents" and not add_noise:  # the second half of a split schedule: base -> refiner
            previous = latent.previous
            if previous.stopped_at is None:
                raise Refused(f"{s}: add_noise disable on the finished latents of node {previous.key[1]} has no "
                              "runner equivalent", "let the first sampler return with leftover noise, or enable add_noise")
            if abs(previous.stopped_at - start) > 1e-6:
                raise Refused(f"{s} starts at step {start_step} of {steps} ({start:g} of the schedule) but node "
                              f"{previous.key[1]} stopped at {previous.stopped_at:g}: runner hands over at one point",
                              "make start_at_step of the second sampler equal end_at_step of the first, for equal steps")
            if latent.mask is not None:
                raise Refused(f"{s}: a noise mask on leftover-noise latents has no runner equivalent")
            kind = "refine"
            body["latents"] = latent.latents
            body["denoising_start"] = round(start, 6)
            size, batch = previous.size, previous.batch
            if batch > 1:
                body["num_images"] = batch
            runner_steps = steps
        else:  # noise added over an image, or over another sampler's finished latents: img2img / inpaint
            if not add_noise:
                raise Refused(f"{s}: add_noise disable over an encoded image has no runner equivalent",
                              "enable add_noise")
            if latent.kind == "latents" and latent.previous.stopped_at is not None:
                raise Refused(f"{s} adds noise to the leftover-noise latents of node {latent.previous.key[1]}: runner "
                              "continues such latents only without new noise",
                              "set add_noise disable and start_at_step where the first sampler ended")
            if latent.kind == "latents" and family:
                raise Refused(f"{s} samples the latents of {self.nodes[latent.previous.key[1]]} on {FAMILIES[family]}: "
                              f"runner's {FAMILIES[family]} img2img takes an image, not latents",
                              "decode them (VAEDecode) and encode the image again (VAEEncode) for this sampler")
            kind = "inpaint" if latent.mask is not None else "img2img"
            if latent.kind == "latents":
                body["latents"] = latent.latents
                size, batch = latent.size, latent.batch
                if batch > 1:
                    body["num_images"] = batch
            else:
                body["image"] = latent.image
                size = latent.size
            if latent.mask is not None:
                body["mask"] = latent.mask
            if advanced:
                strength = round(1 - start, 6)
                runner_steps = steps
            else:
                strength = denoise
                # ComfyUI runs `steps` steps over the last `denoise` of a longer schedule; diffusers runs
                # int(steps * strength) of `steps`: this many steps make diffusers run at least as many as ComfyUI
                needed = steps / denoise  # inf for a denoise of 5e-324
                if needed > MAX_STEPS + 1e-9:
                    shown = (f"{math.ceil(needed - 1e-9):,}" if needed < 1e12 else f"{needed:.3g}"
                             if math.isfinite(needed) else "over 1.8e308")
                    raise Refused(f"{s}: {steps} step{'s' if steps > 1 else ''} at denoise {denoise:g} need {shown} "
                                  f"steps of diffusers' img2img (steps / denoise), more than runner's {MAX_STEPS}",
                                  f"raise denoise to {steps / MAX_STEPS:g} or more, or lower steps")
                runner_steps = steps if denoise == 1 else math.ceil(needed - 1e-9)
                if runner_steps != steps:
                    notes.append(f"steps {runner_steps} = ComfyUI's {steps} / denoise {denoise:g}, rounded up: diffusers "
                                 f"runs int(steps x strength) = {int(runner_steps * strength + 1e-9)} of them, ComfyUI ran {steps}")
            body["strength"] = strength
        if end < 1:
            if not leftover:
                raise Refused(f"{s} stops at step {end_step} of {steps} and returns without leftover noise: "
                              "runner has no truncated schedule", "set end_at_step to 10000, or return_with_leftover_noise"
                              " enable and finish in a second KSamplerAdvanced")
            arguments["denoising_end"] = round(end, 6)
        if runner_steps > MAX_STEPS:
            raise Refused(f"{s}: {runner_steps} steps are more than runner's {MAX_STEPS}")
        seed = inputs["noise_seed" if advanced else "seed"]
        if not 0 <= seed <= MAX_SEED:
            raise Refused(f"{s}: seed {seed} is outside runner's 0 .. 2^63-1", "pick a smaller seed in ComfyUI")
        cfg = inputs["cfg"]
        if not 0 <= cfg <= MAX_CFG:
            raise Refused(f"{s}: cfg {cfg} is outside runner's 0 .. {MAX_CFG:g}")
        flow = family is not None  # FLUX.1 and SD3 are flow-matching models, with their own samplers
        scheduler = scheduler_for(inputs["sampler_name"], inputs["scheduler"], flow)
        if scheduler is None:
            on = f" on {FAMILIES[family]}" if flow else ""
            raise Refused(f"{s}: sampler '{inputs['sampler_name']}' with scheduler '{inputs['scheduler']}' has no runner "
                          f"scheduler{on}", f"runner maps {supported_schedules(flow)}; pick one of those in ComfyUI and "
                                            "export again")
        guidance = cfg
        if family == "flux":
            if cfg != 1:
                raise Refused(f"{s}: cfg {cfg:g} on a FLUX.1 model: ComfyUI then adds classifier-free guidance with the "
                              "negative prompt to FLUX's distilled guidance, which runner does not import",
                              "set cfg to 1 and the guidance with a FluxGuidance between the CLIPTextEncode and the "
                              "sampler's positive input")
            guidance = positive.guidance[0].inputs["guidance"] if positive.guidance else FLUX_GUIDANCE_DEFAULT
            if not 0 <= guidance <= MAX_CFG:
                raise Refused(f"{positive.guidance[0]}: guidance {guidance:g} is outside runner's 0 .. {MAX_CFG:g}")

        embeddings: dict[str, str] = {}  # token -> file, of the prompts written
        prompt = self.prompt(positive, size, negative=False, family=family, embeddings=embeddings, notes=notes)
        negative_prompt = (self.prompt(negative, size, negative=True, family=family, embeddings=embeddings, notes=notes)
                           if negative_counts else ("", {}))
        if not negative_counts:
            texts = [negative.encoder.inputs[k] for k in ("text", "text_l", "text_g")
                     if isinstance(negative.encoder.inputs.get(k), str) and negative.encoder.inputs[k].strip()]
            if texts:
                note = (f"the negative prompt of {negative.encoder} ({_shown(texts[0])}) has no effect on FLUX.1 at cfg 1 "
                        "(ComfyUI ignores it): left out")
                notes.append(note)
                self.notes.append(note)
        arguments.update(prompt[1])
        arguments.update(negative_prompt[1])
        parts = text_encoders + ((("vae", vae, "VAELoader"),) if vae else ())
        ordered: dict[str, Any] = {"type": kind, "model": self.model(model_kind, model_file, parts)}
        if embeddings:
            self.embeddings.setdefault(ordered["model"].removeprefix("$models."), {}).update(embeddings)
        ordered.update({k: body.pop(k) for k in ("image", "latents", "mask") if k in body})
        ordered["prompt"] = escaped(prompt[0])
        if negative_prompt[0]:
            ordered["negative_prompt"] = escaped(negative_prompt[0])
        ordered.update(body)
        ordered.update(steps=runner_steps, guidance_scale=guidance, scheduler=scheduler, seed=seed)
        lora = [{"model": self.model("lora", node.inputs["lora_name"]), "scale": node.inputs["strength_model"]}
                for node in loras]
        if lora:
            ordered["lora"] = lora
            comfy += [f"{node.id} {node.class_type}" for node in loras]
        controlnets = self.controlnets(s, positive, negative)
        if controlnets:
            ordered["controlnet"] = controlnets
            comfy += [f"{node.id} {node.class_type}" for node in positive.controlnets]
        if arguments:
            ordered["pipeline_kwargs"] = arguments
        key = ("gen", s.id)
        self.add(RunnerNode(key, kind, comfy, ordered, notes))
        return Generation(key, batch, size, checkpoint, end if end < 1 else None, family)

    def lora_chain(self, start: ComfyNode, input_name: str) -> tuple[ComfyNode, list[ComfyNode]]:
        """Follow `start`'s `input_name` ("model" or "clip") up through LoraLoaders: (the node it comes from, the
        LoraLoaders passed, nearest `start` first); all of them count as used."""
        node, _index = self.source(start, input_name)
        loras: list[ComfyNode] = []
        while node.class_type == "LoraLoader":
            if node in loras or len(loras) > len(self.nodes):
                raise Refused(f"{node}: the LoRA chain is a cycle")
            loras.append(node)
            node, _index = self.source(node, input_name)
        self.used.update([node.id] + [lora.id for lora in loras])
        return node, loras

    def model_chain(self, sampler: ComfyNode) -> tuple[str, list[ComfyNode], list[ComfyNode]]:
        """(the CheckpointLoaderSimple's id, the LoraLoaders between it and the sampler, nearest the checkpoint first,
        those of them at strength 0)."""
        node, loras = self.lora_chain(sampler, "model")
        effective, skipped = [], []
        for lora in reversed(loras):
            strength_model, strength_clip = lora.inputs["strength_model"], lora.inputs["strength_clip"]
            if strength_model == 0 and strength_clip == 0:
                skipped.append(lora)  # ComfyUI skips it too
                continue
            if strength_model != strength_clip:
                raise Refused(f"{lora}: strength_model {strength_model:g} and strength_clip {strength_clip:g} differ; "
                              "runner's lora has one scale for the UNet and the text encoder",
                              "set both strengths to the same value in ComfyUI")
            if not -10 <= strength_model <= 10:
                raise Refused(f"{lora}: strength {strength_model:g} is outside runner's -10 .. 10")
            effective.append(lora)
        return node.id, effective, skipped

    def model_file(self, loader: ComfyNode) -> tuple[str, str]:
        """(what ComfyUI loaded the model as, its file name) from the CheckpointLoaderSimple or UNETLoader."""
        if loader.class_type != "UNETLoader":
            return "checkpoint", loader.inputs["ckpt_name"]
        dtype = loader.inputs.get("weight_dtype", DEFAULTS["UNETLoader", "weight_dtype"])
        if dtype != "default":
            raise Refused(f"{loader}: input 'weight_dtype' is '{dtype}': ComfyUI casts the weights to it as it loads "
                          "them, which runner has no equivalent for (it loads them as the file holds them)",
                          "set weight_dtype to default in ComfyUI and export again")
        return "diffusion model (UNETLoader)", loader.inputs["unet_name"]

    def text_encoders(self, sampler: ComfyNode, loader: ComfyNode, positive: Conditioning, negative: Conditioning,
                      loras: list[ComfyNode], notes: list[str]) -> tuple[str | None, tuple, bool]:
        """(the model's family: "flux" or "sd3" from the CLIP loader's type or a FluxGuidance, None for SD / SDXL;
        the text encoders the entry names as parts, none for the checkpoint's own; whether the negative prompt counts).
        Both prompts must be encoded by the text encoders of the sampler's own model with its LoRAs; the negative one
        need not where it has no effect (FLUX.1 at cfg 1)."""
        clip_family, parts, clip = self.clip_of(sampler, positive.encoder, loader, loras)
        family = clip_family
        if positive.guidance:
            if clip_family == "sd3":
                note = (f"{positive.guidance[0]} sets FLUX.1's distilled guidance, which ComfyUI ignores on an SD3 "
                        "model: left out")
                notes.append(note)
                self.notes.append(note)
            family = clip_family or "flux"  # a FLUX.1 checkpoint with its own text encoders
        negative_counts = not (family == "flux" and sampler.inputs["cfg"] == 1)
        if negative_counts:
            other_family, other_parts, other = self.clip_of(sampler, negative.encoder, loader, loras)
            if (other_family, other_parts) != (clip_family, parts):
                raise Refused(f"{negative.encoder} and {positive.encoder} use the text encoders of different loaders "
                              f"({other} and {clip}): runner encodes both prompts with the node's model",
                              "connect both encoders' clip to the same loader")
        else:  # ComfyUI still loads what the ignored prompt's encoder needs
            self.used.update(self.upstream([negative.encoder]))
        return family, parts, negative_counts

    def clip_of(self, sampler: ComfyNode, encoder: ComfyNode, loader: ComfyNode,
                loras: list[ComfyNode]) -> tuple[str | None, tuple, ComfyNode]:
        """(family, parts, the loader) of the text encoders `encoder` uses: the checkpoint's own (None, ()) or a CLIP
        loader's; they must belong with the sampler's model, through the same LoRAs."""
        node, chain = self.lora_chain(encoder, "clip")
        if node.class_type == "CheckpointLoaderSimple" and node.id != loader.id:
            if loader.class_type == "UNETLoader":
                raise Refused(f"{encoder} uses the text encoder of {node.inputs['ckpt_name']} (node {node.id}) but "
                              f"{sampler} samples with the diffusion model {loader.inputs['unet_name']} (node "
                              f"{loader.id}, UNETLoader): "
                              "runner encodes prompts with the node's own model, whose text encoders a CLIP loader "
                              "names", "load the text encoders with " + " or ".join(CLIP_LOADER_HINT.values()))
            raise Refused(f"{encoder} uses the text encoder of {node.inputs['ckpt_name']} (node {node.id}) but {sampler} "
                          f"samples with {loader.inputs['ckpt_name']} (node {loader.id}): runner encodes "
                          "prompts with the node's own model", "connect the encoder's clip to the same checkpoint")
        applied = {lora.id for lora in chain if lora.inputs["strength_model"] or lora.inputs["strength_clip"]}
        if applied != {lora.id for lora in loras}:
            raise Refused(f"{encoder} and {sampler} go through different LoraLoaders (text encoder: "
                          f"{sorted(applied) or 'none'}, model: {sorted(l.id for l in loras) or 'none'}): runner applies "
                          "a LoRA to both", "connect the encoder's clip to the last LoraLoader's CLIP output")
        if node.class_type in CLIP_LOADERS:
            return (*self.clip_loader(node), node)
        return None, (), node

    def clip_loader(self, loader: ComfyNode) -> tuple[str, tuple[tuple[str, str, str], ...]]:
        """(family, the entry's text encoder parts) of a CLIPLoader, DualCLIPLoader or TripleCLIPLoader: each file
        told apart by its name, all of the family's text encoders present."""
        inputs = loader.inputs
        device = inputs.get("device", "default")
        if device not in ("default", "cpu"):
            raise Refused(f"{loader}: input 'device' is '{device}': runner places the text encoders itself",
                          "set device to default in ComfyUI")
        names = [name for name in NODE_SPECS[loader.class_type][1] if name.startswith("clip_name")]
        if loader.class_type == "TripleCLIPLoader":
            family, label = "sd3", "TripleCLIPLoader"
        else:
            family = inputs.get("type", DEFAULTS.get((loader.class_type, "type")))
            label = f"{loader.class_type} type {family}"
            if family not in TEXT_ENCODERS:
                raise Refused(f"{loader}: input 'type' is '{family}': runner imports the text encoders of FLUX.1 (type "
                              "flux) and SD3 / SD3.5 (type sd3)", "for an SD or SDXL checkpoint connect the CLIP output "
                              "of its CheckpointLoaderSimple (its own text encoders); for FLUX.1 use "
                              f"{CLIP_LOADER_HINT['flux']}, for SD3 / SD3.5 {CLIP_LOADER_HINT['sd3']}")
        wanted = dict(TEXT_ENCODERS[family])  # entry field -> what the file is
        takes = ", ".join(TEXT_ENCODER_NAMES[kind] for kind in wanted.values())
        rule = ("runner tells text encoders apart by their file names: "
                + ", ".join(f"'{word}' in the name is {what}" for word, what in TEXT_ENCODER_NAMES.items()))
        found: dict[str, str] = {}  # what it is -> input name
        for name in names:
            value = inputs[name]
            kind = text_encoder_kind(value)
            if kind is None:
                raise Refused(f"{loader}: input '{name}' is '{value}': runner cannot tell from the name which of "
                              f"{FAMILIES[family]}'s text encoders ({takes}) it is",
                              rule + "; rename the file in ComfyUI's models folder (e.g. clip_l.safetensors, "
                                     "t5xxl_fp16.safetensors) and pick it again")
            if kind not in wanted.values():
                raise Refused(f"{loader}: input '{name}' is '{value}', a {TEXT_ENCODER_NAMES[kind]} text encoder, "
                              f"which {FAMILIES[family]} does not take (it takes {takes})",
                              f"load {FAMILIES[family]}'s text encoders with {CLIP_LOADER_HINT[family]}; {rule}")
            if kind in found:
                raise Refused(f"{loader}: inputs '{found[kind]}' and '{name}' both load a {TEXT_ENCODER_NAMES[kind]} "
                              "text encoder", f"{FAMILIES[family]} takes {takes}, each once; {rule}")
            found[kind] = name
        missing = [TEXT_ENCODER_NAMES[kind] for kind in wanted.values() if kind not in found]
        if missing:
            raise Refused(f"{loader} loads no {' or '.join(missing)} text encoder: ComfyUI runs {FAMILIES[family]} "
                          f"without it, runner's {FAMILIES[family]} model takes all of {takes}",
                          f"load them with {CLIP_LOADER_HINT[family]}")
        return family, tuple((part, inputs[found[kind]], label) for part, kind in wanted.items())

    def decoders(self, sampler: ComfyNode) -> list[ComfyNode]:
        """The VAEDecode nodes of `sampler`'s latents that some SaveImage needs."""
        if self.decodes is None:  # found once: a graph of 1,000 samplers would sort 10,000 nodes for each
            self.decodes = {}
            for node in sorted(self.nodes.values(), key=lambda n: node_order(n.id)):
                if node.class_type == "VAEDecode" and node.id in self.needed:
                    self.decodes.setdefault(str(node.inputs["samples"][0]), []).append(node)
        return self.decodes.get(sampler.id, [])

    def vae_of(self, sampler: ComfyNode, loader: ComfyNode, latent: Latent, notes: list[str]) -> str | None:
        """The VAE file the model entry names (a VAELoader's), or None for the checkpoint's own. runner's model has
        one VAE: the VAEEncode of the sampler's image and every VAEDecode of its latents must use the same."""
        uses = [(latent.node, "encodes")] if latent.kind == "image" else []
        uses += [(node, "decodes") for node in self.decoders(sampler)]
        loaded, others = [], []  # (use, verb, the VAELoader / another CheckpointLoaderSimple)
        own = []
        for node, verb in uses:
            vae, _index = self.source(node, "vae")
            self.used.add(vae.id)
            if vae.class_type == "VAELoader":
                loaded.append((node, verb, vae))
            elif vae.id == loader.id:
                own.append((node, verb, vae))
            else:
                others.append((node, verb, vae))
        names = list(dict.fromkeys(vae.inputs["vae_name"] for _node, _verb, vae in loaded))
        if len(names) > 1:
            first, verb, vae = loaded[0]
            second, verb2, vae2 = next(use for use in loaded if use[2].inputs["vae_name"] != names[0])
            raise Refused(f"{first} {verb} with {names[0]} (node {vae.id}) but {second} {verb2} with "
                          f"{vae2.inputs['vae_name']} (node {vae2.id}), both for {sampler}: runner's model has one VAE",
                          "connect every VAEEncode and VAEDecode of this sampler to one VAELoader")
        if loaded and (own or others):
            (first, verb, vae), (second, verb2, vae2) = loaded[0], (own or others)[0]
            raise Refused(f"{first} {verb} with the VAE of {names[0]} (node {vae.id}) but {second} {verb2} with the VAE "
                          f"of {vae2.inputs['ckpt_name']} (node {vae2.id}), both for {sampler}: runner's model has one "
                          "VAE for encoding and decoding", f"connect both to the VAELoader (node {vae.id})")
        if loaded:
            name, vae = names[0], loaded[0][2]
            if name in BUILT_IN_VAES:
                raise Refused(f"{vae}: input 'vae_name' is '{name}', ComfyUI's built-in "
                              + ("pass-through (no VAE)" if name == "pixel_space" else "approximate TAESD decoder")
                              + ", which runner does not load", "pick the model's VAE file (FLUX.1: ae.safetensors)")
            return name
        if loader.class_type == "UNETLoader" and others:
            node, verb, vae = others[0]
            raise Refused(f"{node} {verb} with the VAE of {vae.inputs['ckpt_name']} (node {vae.id}) for {sampler}, "
                          f"whose diffusion model {loader.inputs['unet_name']} (node {loader.id}, UNETLoader) has none: "
                          "runner's model entry names its VAE file", "load the VAE with a VAELoader")
        for node, verb, vae in others:
            note = (f"ComfyUI {node} {verb} with the VAE of {vae.inputs['ckpt_name']}; runner uses the VAE of the "
                    f"node's own model {loader.inputs['ckpt_name']}")
            notes.append(note)
            self.notes.append(note)
        return None

    def conditioning(self, sampler: ComfyNode, name: str) -> Conditioning:
        """The text encoder of a sampler's prompt, through the ControlNets and FluxGuidance applied to it."""
        node, index = self.source(sampler, name)
        controlnets: list[ComfyNode] = []
        guidance: list[ComfyNode] = []
        while node.class_type in ("ControlNetApply", "ControlNetApplyAdvanced", "FluxGuidance"):
            if node in controlnets or node in guidance or len(controlnets) + len(guidance) > len(self.nodes):
                raise Refused(f"{node}: the conditioning chain is a cycle")
            if node.class_type == "FluxGuidance":
                guidance.append(node)
                node, index = self.source(node, "conditioning")
                continue
            controlnets.append(node)
            inner = "conditioning" if node.class_type == "ControlNetApply" else ("positive", "negative")[index]
            node, index = self.source(node, inner)
        self.used.update([node.id] + [c.id for c in controlnets + guidance])
        return Conditioning(node, controlnets[::-1], guidance)

    def controlnets(self, sampler: ComfyNode, positive: Conditioning, negative: Conditioning) -> list[dict[str, Any]]:
        """diffusers applies a ControlNet to the conditional and the unconditional pass alike: ControlNetApply (which
        ComfyUI applies to both too) on the positive prompt, or a ControlNetApplyAdvanced on both prompts."""
        on_positive = {c.id for c in positive.controlnets}
        for c in negative.controlnets:
            if c.class_type == "ControlNetApply" or c.id not in on_positive:
                raise Refused(f"{c} conditions only the negative prompt of {sampler}: runner applies a ControlNet to both",
                              "apply it to the positive prompt (ControlNetApplyAdvanced: both)")
        on_negative = {c.id for c in negative.controlnets}
        items = []
        for c in positive.controlnets:
            if c.class_type == "ControlNetApplyAdvanced" and c.id not in on_negative:
                raise Refused(f"{c} conditions the positive prompt of {sampler} but not its negative one: runner applies "
                              "a ControlNet to both", "connect its negative output to the sampler's negative input")
            strength = c.inputs["strength"]
            if not 0 <= strength <= MAX_CONTROLNET_SCALE:
                raise Refused(f"{c}: strength {strength:g} is outside runner's 0 .. {MAX_CONTROLNET_SCALE:g}")
            loader, _index = self.source(c, "control_net")
            self.used.add(loader.id)
            item = {"model": self.model("controlnet", loader.inputs["control_net_name"]), "image": self.image(c, "image"),
                    "scale": strength}
            if c.class_type == "ControlNetApplyAdvanced":
                begin, finish = c.inputs["start_percent"], c.inputs["end_percent"]
                if not 0 <= begin < finish <= 1:
                    raise Refused(f"{c}: start_percent {begin:g} and end_percent {finish:g} leave no steps to control")
                if begin:
                    item["start"] = begin
                if finish != 1:
                    item["end"] = finish
            items.append(item)
        return items

    def latent(self, sampler: ComfyNode) -> Latent:
        node, _index = self.source(sampler, "latent_image")
        return self.latent_of(node)

    def latent_of(self, node: ComfyNode) -> Latent:
        self.used.add(node.id)
        comfy = [f"{node.id} {node.class_type}"]
        kind = node.class_type
        if kind in EMPTY_LATENTS:
            width, height, batch = node.inputs["width"], node.inputs["height"], node.inputs["batch_size"]
            step = EMPTY_LATENTS[kind]
            for what, value in (("width", width), ("height", height)):
                if not (step <= value <= 8192 and value % step == 0):
                    raise Refused(f"{node}: {what} {value} is not a multiple of {step} from {step} to 8192",
                                  f"set {what} to a multiple of {step} from {step} to 8192 (runner's generation sizes), "
                                  "e.g. 512 or 1024")
            if not 1 <= batch <= 64:
                raise Refused(f"{node}: batch_size {batch} is outside runner's 1 .. 64")
            return Latent("empty", comfy, width, height, batch, node=node)
        if kind in SAMPLERS:  # that sampler's own runner node names it
            previous = self.generation(node)
            return Latent("latents", [], batch=previous.batch, previous=previous, latents=Use(previous.key, "latents"),
                          size=previous.size)
        if kind in LATENT_SCALES:
            return self.upscaled_latents(node)
        size = self.image_size(node, "pixels") if kind in ("VAEEncode", "VAEEncodeForInpaint") else None
        if size is not None:  # ComfyUI's VAEEncode crops the pixels to multiples of 8, diffusers resizes down to them
            size = (size[0] // 8 * 8, size[1] // 8 * 8)
        if kind == "VAEEncode":
            return Latent("image", comfy, image=self.image(node, "pixels"), node=node, size=size)
        if kind == "VAEEncodeForInpaint":
            grow = node.inputs.get("grow_mask_by", DEFAULTS["VAEEncodeForInpaint", "grow_mask_by"])
            # ComfyUI grows the noise mask with a grow_mask_by-wide square kernel: about half of it on each side
            return Latent("image", comfy, image=self.image(node, "pixels"), mask=self.mask(node, "mask", grow // 2),
                          node=node, size=size)
        # SetLatentNoiseMask: the latents it wraps, repainted where the mask is white
        inner_node, _index = self.source(node, "samples")
        inner = self.latent_of(inner_node)
        if inner.kind == "empty":
            raise Refused(f"{node}: a noise mask on an {inner.node.class_type} has no runner equivalent",
                          "mask the encoded image (VAEEncode) instead")
        if inner.mask is not None:
            raise Refused(f"{node}: the latents already carry a mask (two masks on one sampler)")
        inner.mask = self.mask(node, "mask", 0)
        inner.comfy = comfy + inner.comfy
        return inner

    def upscaled_latents(self, scale: ComfyNode) -> Latent:
        """The latents of a LatentUpscale / LatentUpscaleBy: an upscale_latents node over a sampler's latents (one per
        ComfyUI node), a bigger empty latent over an empty one, or the latents themselves where LatentUpscale's width
        and height are both 0 (ComfyUI passes them on unchanged)."""
        if scale.id in self.upscaled:
            return copy.copy(self.upscaled[scale.id])
        if scale.id in self.in_progress:
            raise Refused(f"{scale} depends on its own output: the graph has a cycle")
        self.in_progress.add(scale.id)
        try:
            latent = self._upscaled_latents(scale)
        finally:
            self.in_progress.discard(scale.id)
        self.upscaled[scale.id] = latent
        return copy.copy(latent)

    def _upscaled_latents(self, scale: ComfyNode) -> Latent:
        self.used.add(scale.id)
        comfy = [f"{scale.id} {scale.class_type}"]
        inputs = scale.inputs
        source, _index = self.source(scale, "samples")
        inner = self.latent_of(source)
        by = scale.class_type == "LatentUpscaleBy"
        if not by and inputs["width"] == 0 and inputs["height"] == 0:  # ComfyUI passes the latents on as they are
            inner.comfy = comfy + inner.comfy
            return inner
        method = inputs["upscale_method"]
        if method not in LATENT_METHODS:
            raise Refused(f"{scale}: upscale_method '{method}' has no runner equivalent (runner's upscale_latents "
                          f"interpolates with torch: {', '.join(LATENT_METHODS)})",
                          f"pick one of {', '.join(LATENT_METHODS)} in ComfyUI and export again")
        if not by and inputs["crop"] != "disabled":
            raise Refused(f"{scale}: crop '{inputs['crop']}' (cut to the new aspect ratio before enlarging) has no "
                          "runner equivalent: runner's upscale_latents enlarges the whole latents",
                          "set crop to disabled in ComfyUI (the latents are then stretched to width x height)")
        if inner.mask is not None:
            raise Refused(f"{scale} enlarges latents that carry a noise mask: runner has no equivalent",
                          "set the noise mask (SetLatentNoiseMask) after the LatentUpscale")
        if inner.kind == "image":
            raise Refused(f"{scale} enlarges the latents of {inner.node}: runner's upscale_latents enlarges the "
                          "latents a sampler made",
                          "enlarge the image before it is encoded, with ImageScale or ImageScaleBy")
        previous = inner.previous
        if inner.kind == "latents":
            if previous.stopped_at is not None:
                raise Refused(f"{scale} enlarges the leftover-noise latents of {self.nodes[previous.key[1]]}, which "
                              f"stops at {previous.stopped_at:g} of its schedule: runner enlarges finished latents "
                              "only",
                              "let the sampler finish (return_with_leftover_noise disable, end_at_step 10000)")
            if previous.family:
                sampler, family = self.nodes[previous.key[1]], FAMILIES[previous.family]
                raise Refused(f"{scale} enlarges the latents of {sampler}, a {family} model's: runner hands latents on "
                              "in SD 1.x/2.x and SDXL only",
                              "decode them (VAEDecode), enlarge the image with ImageScaleBy and encode it again "
                              "(VAEEncode)")
        size = (inner.width, inner.height) if inner.kind == "empty" else inner.size
        body: dict[str, Any] = {"type": "upscale_latents", "latents": inner.latents}
        notes: list[str] = []
        if by:
            factor = inputs["scale_by"]
            if not 0 < factor <= 8:
                raise Refused(f"{scale}: scale_by {factor:g} is outside runner's range (above 0, at most 8)")
            body["scale"] = factor
            new = None
            if size is not None:  # ComfyUI rounds the latents' sides, as upscale_latents does
                new = tuple(max(1, round(side // LATENT_FACTOR * factor)) * LATENT_FACTOR for side in size)
        else:
            width, height = inputs["width"], inputs["height"]
            if 0 in (width, height) and size is None:
                other = "width" if width == 0 else "height"
                raise Refused(f"{scale}: {other} 0 keeps the aspect ratio of the latents, whose size the graph does "
                              "not tell here (they come from an image whose file is read only when the workflow runs)",
                              "set both width and height in ComfyUI")
            # ComfyUI's LatentUpscale, to the pixel: at least 64 px a side, the other side from the aspect ratio
            # of the latents, then whole latent cells (1/8)
            if width == 0:
                height = max(LATENT_MIN_SIDE, height)
                width = max(LATENT_MIN_SIDE, round(size[0] // LATENT_FACTOR * height / (size[1] // LATENT_FACTOR)))
            elif height == 0:
                width = max(LATENT_MIN_SIDE, width)
                height = max(LATENT_MIN_SIDE, round(size[1] // LATENT_FACTOR * width / (size[0] // LATENT_FACTOR)))
            else:
                width, height = max(LATENT_MIN_SIDE, width), max(LATENT_MIN_SIDE, height)
            new = (width // LATENT_FACTOR * LATENT_FACTOR, height // LATENT_FACTOR * LATENT_FACTOR)
            if new != (inputs["width"], inputs["height"]):
                notes.append(f"size {list(new)}: ComfyUI's LatentUpscale of width {inputs['width']}, height "
                             f"{inputs['height']}" + (f" on {size[0]} x {size[1]}" if size else "")
                             + " (0 keeps the aspect ratio; at least 64 px; whole latent cells of 8 px)")
            for what, value in zip(("width", "height"), new):
                if value > MAX_SIDE:
                    raise Refused(f"{scale}: {what} {value} is more than runner's {MAX_SIDE}")
            body["size"] = list(new)
        if inner.kind == "empty":  # enlarged zeros are zeros: a bigger empty latent
            if not all(LATENT_FACTOR <= side <= MAX_SIDE for side in new):
                raise Refused(f"{scale}: the enlarged empty latent is {new[0]} x {new[1]} px, outside runner's "
                              f"{LATENT_FACTOR} .. {MAX_SIDE}")
            return Latent("empty", comfy + inner.comfy, new[0], new[1], inner.batch, node=inner.node)
        body["method"] = method
        key = ("latents", scale.id)
        self.add(RunnerNode(key, "upscale_latents", comfy, body, notes))
        return Latent("latents", [], batch=inner.batch, previous=previous, latents=Use(key), size=new)

    def prompt(self, conditioning: Conditioning, size: tuple[int, int] | None, negative: bool,
               family: str | None, embeddings: dict[str, str], notes: list[str]) -> tuple[str, dict]:
        """(prompt text, pipeline_kwargs) of one side of a sampler's conditioning; the embeddings its texts name are
        added to `embeddings`."""
        encoder = conditioning.encoder
        inputs = {name: self.prompt_text(encoder, name, value, family, embeddings, notes)
                  if name in ("text", "text_g", "text_l") else value for name, value in encoder.inputs.items()}
        if family and encoder.class_type != "CLIPTextEncode":
            raise Refused(f"{encoder} encodes an SDXL prompt (with SDXL's size conditioning), but the sampler's model "
                          f"is {FAMILIES[family]}", "use CLIPTextEncode")
        prefix = "negative_" if negative else ""
        arguments: dict[str, Any] = {}
        default_size = [size[1], size[0]] if size else None  # diffusers: (height, width) of the output
        if encoder.class_type == "CLIPTextEncode":
            return inputs["text"], arguments
        if encoder.class_type == "CLIPTextEncodeSDXL":
            # diffusers' prompt goes to CLIP ViT-L (ComfyUI's text_l), prompt_2 to OpenCLIP bigG (text_g)
            if inputs["text_g"] != inputs["text_l"]:
                arguments[prefix + "prompt_2"] = escaped(inputs["text_g"])
            for argument, value, default in (
                ("original_size", [inputs["height"], inputs["width"]], default_size),
                ("crops_coords_top_left", [inputs["crop_h"], inputs["crop_w"]], [0, 0]),
                ("target_size", [inputs["target_height"], inputs["target_width"]], default_size),
            ):
                if value != default:
                    arguments[prefix + argument] = value
            return inputs["text_l"], arguments
        # CLIPTextEncodeSDXLRefiner
        score, default_score = inputs["ascore"], (NEGATIVE_AESTHETIC_DEFAULT if negative else AESTHETIC_DEFAULT)
        if score != default_score:
            arguments[prefix + "aesthetic_score"] = score
        original = [inputs["height"], inputs["width"]]
        if original != default_size:
            arguments[prefix + "original_size"] = original
        return inputs["text"], arguments

    def prompt_text(self, encoder: ComfyNode, name: str, text: str, family: str | None, embeddings: dict[str, str],
                    notes: list[str]) -> str:
        """A prompt as runner reads it under prompt_syntax: weighted (every import's: ComfyUI weighs every prompt, SDXL's
        text_g too), with the weights ComfyUI reads in it (its
        own text where runner reads the same; else rewritten so that it does); its `embedding:NAME` references added
        to `embeddings` as {token: file}."""
        where = f"{encoder}: input '{name}'"
        try:
            comfy = comfy_segments(text)
        except RecursionError:
            raise Refused(f"{where} nests brackets too deeply to be read") from None
        weights = [(part, weight) for part, weight in comfy if weight != 1.0]
        for part, weight in weights:
            if not math.isfinite(weight) or weight < 0:
                raise Refused(f"{where}: ComfyUI reads '{part.strip()}' at weight {weight:g}; runner weighs words from "
                              "0 up", "use a weight of 0 or more, e.g. (word:0.5); or leave the word out")
        self.embedding_references(encoder, where, comfy, family, embeddings)
        written = text if _normal(runner_segments(text)) == comfy else runner_form(comfy)
        if written != text:
            if _normal(runner_segments(written)) != comfy:  # a safety net: runner_form is made to read back the same
                raise Refused(f"{where}: runner cannot write this prompt with the weights ComfyUI reads in it",
                              "simplify the brackets in the text")
            notes.append(f"{encoder} {name}: written in runner's weighted syntax ({_quoted(written)}) to weigh as "
                         f"ComfyUI reads {_quoted(text)} (square brackets are text there, an inner (word:w) sets the "
                         "weight, a bracket left open is text)")
        if family and (weights or written != text):
            what = (f"weighs words ('{weights[0][0].strip()}' at {weights[0][1]:g})" if weights
                    else "has brackets, which runner's weighted prompts read as weights")
            raise Refused(f"{where} {what}: runner does not weigh {FAMILIES[family]} prompts in this version",
                          "remove the weights (and brackets) from the text in ComfyUI")
        return self.no_other_references(where, written, embeddings)

    @staticmethod
    def no_other_references(where: str, text: str, embeddings: dict[str, str]) -> str:
        """runner takes every `embedding:NAME` in a prompt for an embedding; ComfyUI only one after a space."""
        for token in EMBEDDING_REFERENCE.findall(text):
            if token not in embeddings:
                raise Refused(f"{where}: ComfyUI reads '{token}' as text (it is not after a space or at the start), "
                              "runner as a textual-inversion embedding", "put a space before embedding: in ComfyUI "
                              "(to load the embedding), or reword the text")
        return text

    def embedding_references(self, encoder: ComfyNode, where: str, comfy: list[tuple[str, float]],
                             family: str | None, embeddings: dict[str, str]) -> None:
        """ComfyUI's `embedding:NAME` in a prompt loads models/embeddings/NAME (.safetensors, .pt, ... added when the
        name has none): runner's model entry must load it under the token as written, which runner's checks read as
        `embedding:` and letters, digits, `_`, `.`, `-`."""
        for part, _weight in comfy:
            for match in COMFY_EMBEDDING.finditer(part):
                word = match.group(1)
                comfy_name = word.strip(",")  # ComfyUI tries the word, then without the commas around it
                tokens = EMBEDDING_REFERENCE.findall(match.group(0))
                token = tokens[0] if tokens else "embedding:"
                if not comfy_name or token != "embedding:" + comfy_name:
                    raise Refused(f"{where}: 'embedding:{word}' names a textual-inversion embedding by a name "
                                  "runner does not read as one: runner's token is embedding: with letters, digits, _, "
                                  f". and - (here it would read {token!r})", "rename the embedding's file in ComfyUI's "
                                  "models/embeddings/ (no subfolder) to such a name, and the prompt with it")
                suffix = PurePosixPath(comfy_name).suffix.lower()
                if suffix in (".pt", ".bin", ".ckpt", ".pth"):
                    raise Refused(f"{where}: '{token}' names a {suffix} embedding: runner loads .safetensors "
                                  "embeddings only (pickle files can run code when loaded)",
                                  "convert it to .safetensors (or use that version of it) and name that file")
                if family:
                    raise Refused(f"{where}: '{token}' loads a textual-inversion embedding, which runner loads into "
                                  f"SD 1.x/2.x and SDXL only ({FAMILIES[family]} takes none)",
                                  "remove it from the prompt in ComfyUI")
                file = comfy_name if suffix == ".safetensors" else comfy_name + ".safetensors"
                embeddings[token] = file

    # ----------------------------------------------------------------- result
    def result(self, skipped_keys: list[str]) -> Imported:
        chosen = choose_ids(list(self.runner_nodes.values()))
        rank = {"load": 0, "mask": 1, "gen": 2, "latents": 2, "image": 2, "save": 3}

        def order(node: RunnerNode) -> tuple:
            # samplers by how many come before them; an upscale after the sampler it enlarges
            depth = 0.0
            if node.key[0] == "gen":
                depth = self.stage(self.nodes[node.key[1]]) - 1
            elif node.key[0] in ("latents", "image"):
                depth = self.stage(self.nodes[node.key[1]]) - 0.5
            return rank[node.key[0]], depth, node_order(node.key[1])

        nodes = [(chosen[node.key], node) for node in sorted(self.runner_nodes.values(), key=order)]
        models: dict[str, str | dict[str, str]] = {}
        kinds: dict[str, str] = {}
        for (kind, file_name, parts), name in self.models.items():
            models[name] = bare_file_name(file_name)
            kinds[name] = kind + ("" if bare_file_name(file_name) == file_name else f" {file_name}")
            if parts:
                models[name] = {"source": models[name], **{part: bare_file_name(comfy) for part, comfy, _ in parts}}
                by_loader: dict[str, list[str]] = {}
                for part, comfy, loader in parts:
                    shown = part + ("" if bare_file_name(comfy) == comfy else f" {comfy}")
                    by_loader.setdefault(loader, []).append(shown)
                kinds[name] += "".join(f"; {', '.join(fields)} from {loader}" for loader, fields in by_loader.items())
            if self.embeddings.get(name):
                entry = models[name] if isinstance(models[name], dict) else {"source": models[name]}
                models[name] = {**entry, "embeddings": dict(self.embeddings[name])}
                kinds[name] += "; embeddings named in its prompts (embedding:NAME, from models/embeddings/)"
        unused = [f"{n.id} {n.class_type}" for n in sorted(self.nodes.values(), key=lambda n: node_order(n.id))
                  if n.id not in self.used]
        return Imported(models, kinds, nodes, skipped_keys, unused, self.images, self.notes)

    # the input each node's latents or image come through, back to the samplers before it
    CHAIN = {"KSampler": "latent_image", "KSamplerAdvanced": "latent_image", "SetLatentNoiseMask": "samples",
             "LatentUpscale": "samples", "LatentUpscaleBy": "samples", "VAEDecode": "samples", "VAEEncode": "pixels",
             "VAEEncodeForInpaint": "pixels", "ImageScale": "image", "ImageScaleBy": "image"}

    def stage(self, node: ComfyNode) -> int:
        """How many samplers made the latents or image of `node`, itself included (base before refiner in the file,
        the hires pass after the first)."""
        count, seen = 0, set()
        while node.id not in seen and node.class_type in self.CHAIN:
            seen.add(node.id)
            count += node.class_type in SAMPLERS
            node, _index = self.source(node, self.CHAIN[node.class_type])
        return count


def save_name(prefix: str) -> str:
    """SaveImage's filename_prefix as a file name in the run folder: its last part, %date:...% tokens and characters
    outside [A-Za-z0-9_.-] dropped, .png added."""
    last = prefix.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    last = re.sub(r"%[^%]*%", "", last)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", last).strip("._-")[:90]
    return (name or "ComfyUI") + ".png"


def choose_ids(nodes: list[RunnerNode]) -> dict[tuple, str]:
    """Each node's preferred id when no other node wants it, else the id with its ComfyUI node's id added."""
    def valid(name: str) -> str:
        name = re.sub(r"[^a-z0-9_]+", "_", name.lower()) or "node"
        return "image_" + name if name[0].isdigit() or name in RESERVED else name

    wanted: dict[str, int] = {}
    for node in nodes:
        wanted[valid(node.preferred)] = wanted.get(valid(node.preferred), 0) + 1
    chosen: dict[tuple, str] = {}
    taken: set[str] = set()
    for node in nodes:
        base = valid(node.preferred)
        name = base if wanted[base] == 1 else valid(f"{base}_{node.key[1]}")
        while name in taken:
            name += "_"
        taken.add(name)
        chosen[node.key] = name
    return chosen


def save_names_unique(imported: Imported) -> None:
    """Two SaveImage nodes with one prefix would write one file: the second gets its node id added."""
    seen: set[str] = set()
    for node_id, node in imported.nodes:
        if node.body.get("type") != "save_image":
            continue
        name = node.body["name"]
        if name.casefold() in seen:
            name = name[: -len(".png")] + f"_{node_id}.png"
            node.body["name"] = name
        seen.add(name.casefold())
