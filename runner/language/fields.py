"""The vocabulary node declarations are written in: typed links, model and file fields.

Each special field type carries a marker in its Annotated metadata. The graph
reads `Accepts` to type-check links, the executor reads `ModelField` and
`InputFile` to build cache keys; nothing needs to know node type names.
"""


import re
from dataclasses import dataclass, field
from pathlib import Path
import typing
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, model_validator

from ..core.kinds import IMAGE_KINDS
from ..core.model_entry import ModelEntry
from ..core.runtime import ATTENTION_BACKENDS, COMPILE_MODES, QUANTIZATIONS, STEP_CACHE_SETTINGS, STEP_CACHES
from .errors import Invalid
from .refs import LINK_PATTERN, MODEL_REF_PREFIX, Link

IMAGE_LIKE = frozenset(IMAGE_KINDS)


@dataclass(frozen=True)
class Accepts:
    """Marks a link field: which output kinds it takes, and whether it takes a list.

    With `mapping`, the field is a mapping of plain values in which any value may be such a link
    (or a list of them): the `pipeline` node's `call`.
    """

    kinds: frozenset
    many: bool = False
    description: str = ""
    mapping: bool = False


@dataclass(frozen=True)
class ModelField:
    """Marks a field naming a model: `$models.NAME` or an inline source. `kind` is what the field expects
    ("pipeline", "controlnet", "lora", "upscaler", "depth-estimator", ...): which model folders a bare file name is
    looked for in, and what a model found there must be."""

    kind: str = "pipeline"


@dataclass(frozen=True)
class KeyedWhenSet:
    """Marks a field added to a node type after its cache keys were first made: at its default it is left out of the
    node's cache key, so that adding the field keeps every existing key, and so every cached result, as it was."""


@dataclass(frozen=True)
class InputFile:
    """Marks a path to a file read by the node, relative to the workflow's folder; its bytes are hashed.

    Every such path is confined (runner.core.input_files): inside the workflow's folder or an allowed one, a regular
    file of a bounded size."""


@dataclass(frozen=True)
class RunFolderFile:
    """A file a node writes into the run folder: `name`, or with `numbered` the series STEM_0.png, STEM_1.png, ...
    (STEM and the suffix from `name`). `field` is where the node sets the name; () when it comes from the node id.

    Declarations list them (`writes`), so that validation refuses two nodes writing the same file."""

    name: str
    numbered: bool = False
    field: tuple = ()

    def shown(self) -> str:
        stem, suffix = _split_suffix(self.name)
        return f"{stem}_0{suffix}, {stem}_1{suffix}, ..." if self.numbered else self.name

    def collides(self, other: "RunFolderFile") -> bool:
        """True when both could write the same file (names compared ignoring case: some file systems do)."""
        mine, theirs = self.name.casefold(), other.name.casefold()
        if self.numbered == other.numbered:
            return mine == theirs
        series, single = (mine, theirs) if self.numbered else (theirs, mine)
        stem, suffix = _split_suffix(series)
        return re.fullmatch(re.escape(stem) + r"_[0-9]+" + re.escape(suffix), single) is not None


def _split_suffix(name: str) -> tuple[str, str]:
    stem, dot, suffix = name.rpartition(".")
    return (stem, dot + suffix) if dot else (name, "")


def _link_validator(many: bool):
    def validate(value: Any) -> Any:
        if isinstance(value, Link):
            return value
        if many and isinstance(value, list) and value and all(isinstance(v, Link) for v in value):
            return value
        expected = "a link like $node or $node.output" + (", or a list of such links" if many else "")
        if not isinstance(value, list):
            shown, wrong = repr(value), value
        elif not many:
            shown, wrong = "a list (this field takes one image)", None
        elif not value:
            shown, wrong = "an empty list", None
        else:
            index, wrong = next((i, v) for i, v in enumerate(value) if not isinstance(v, Link))
            shown = f"{wrong!r} as item [{index}]"
        if isinstance(wrong, str) and re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?", wrong):
            hint = f"write ${wrong} to link the output of node '{wrong.split('.')[0]}' ($ marks a link)"
        elif isinstance(value, list) and not many:
            hint = "link one image, e.g. $node; a grid or save_image 'images' field takes several"
        elif isinstance(value, list) and not value:
            hint = "list the images to link, e.g. [$first, $second], or link an images output: $node.images"
        else:
            hint = "link a node's output: $node (its default output) or $node.output"
        raise Invalid(f"expected {expected}, got {shown}", hint)

    return validate


_LINK_SCHEMA = {"type": "string", "pattern": LINK_PATTERN}


def link(kinds: frozenset, many: bool = False):
    schema = {"anyOf": [_LINK_SCHEMA, {"type": "array", "items": _LINK_SCHEMA, "minItems": 1}]} if many else dict(_LINK_SCHEMA)
    return Annotated[Any, PlainValidator(_link_validator(many)), WithJsonSchema(schema), Accepts(kinds, many)]


ImageIn = link(IMAGE_LIKE)
MaskIn = link(IMAGE_LIKE)  # any image-like output; converted to one channel
LatentsIn = link(frozenset({"latents"}))
ImagesIn = link(IMAGE_LIKE | {"images"}, many=True)
# keyword arguments: plain YAML values, or links to image outputs (each loaded as a PIL image)
ArgumentsWithImages = Annotated[dict[str, Any], Accepts(IMAGE_LIKE, mapping=True)]

def model_in(kind: str):
    """A model field expecting a model of `kind` (see ModelField)."""
    return Annotated[str, Field(min_length=1), ModelField(kind)]


ModelIn = model_in("pipeline")
FilePath = Annotated[str, Field(min_length=1), InputFile()]

Size = Annotated[
    tuple[Annotated[int, Field(ge=8, le=8192)], Annotated[int, Field(ge=8, le=8192)]],
    Field(description="[width, height] in pixels"),
]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)] | Literal["random"]

# Short names users know from A1111/ComfyUI; runner.models.schedulers maps them to diffusers classes.
# (LMS and the DPM++ SDE variants are left out: they need scipy / torchsde.)
SCHEDULERS = (
    "ddim", "ddpm", "deis", "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_2m_sde", "dpmpp_2m_sde_karras",
    "euler", "euler_a", "heun", "kdpm2", "kdpm2_a", "lcm", "pndm", "unipc",
)
SchedulerName = Literal[SCHEDULERS]  # type: ignore[valid-type]
Offload = Literal["none", "model", "sequential", "group"]


class Fields(BaseModel):
    """Base of every node's fields: unknown keys are errors, values are checked strictly enough to catch typos."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, defer_build=True)


def find_marker(annotation: Any, marker_type: type) -> Any:
    """The first `marker_type` instance in an annotation's Annotated metadata, looking through Optional/Union."""
    import typing

    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, marker_type):
            return meta
    for arg in typing.get_args(annotation):
        found = find_marker(arg, marker_type)
        if found is not None:
            return found
    return None


def iter_marked(fields: BaseModel, marker_type: type, path: tuple = ()):
    """Yield (value, marker, path) for every set field marked with `marker_type`, in nested field models too."""
    for name, info in type(fields).model_fields.items():
        value = getattr(fields, name)
        if value is None:
            continue
        key = info.alias or name
        marker = None
        for meta in info.metadata:
            if isinstance(meta, marker_type):
                marker = meta
        marker = marker or find_marker(info.annotation, marker_type)
        if marker is not None:
            yield value, marker, path + (key,)
        elif isinstance(value, BaseModel):
            yield from iter_marked(value, marker_type, path + (key,))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from iter_marked(item, marker_type, path + (key, index))


def field_values(fields: BaseModel, *, only_set: bool = False) -> dict[str, Any]:
    """Fields as plain data keyed by their YAML names; Links are kept as Link objects."""
    out = {}
    for name, info in type(fields).model_fields.items():
        if only_set and name not in fields.model_fields_set:
            continue
        out[info.alias or name] = _plain(getattr(fields, name), only_set)
    return out


def _plain(value: Any, only_set: bool) -> Any:
    if isinstance(value, BaseModel):
        return field_values(value, only_set=only_set)
    if isinstance(value, (list, tuple)):
        return [_plain(v, only_set) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, only_set) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class CheckContext:
    """What a node's `check` may look at: the workflow's named models and the folder relative paths start from."""

    models: dict[str, ModelEntry]  # name -> ModelEntry
    base_dir: Path
    model_roots: tuple = ()  # the model folders bare names are looked for in (runner.models.model_folders)
    nodes: dict = field(default_factory=dict)  # node id -> its validated fields (what a link's source node is)
    prompt_syntax: str = "plain"  # the workflow's: how its prompts are read (plain, weighted)


def resolve_entry(ref: str, models: dict[str, ModelEntry]) -> ModelEntry:
    """`$models.NAME` or an inline source string -> ModelEntry."""
    if ref.startswith(MODEL_REF_PREFIX):
        return models[ref[len(MODEL_REF_PREFIX):]]
    return ModelEntry(source=ref)


class NodeDeclaration(Protocol):
    """What the language needs of a node type (runner.nodes declares them; the language is handed a catalogue)."""

    name: str
    fields: type[Fields]
    outputs: dict[str, str]
    model: type[BaseModel]
    check: Any
    writes: Any  # None, or `writes(fields, node_id) -> [RunFolderFile]`: the files it writes into the run folder

    @property
    def default_output(self) -> str | None: ...


Catalogue = dict[str, NodeDeclaration]


def nested_models(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The models of the fields that hold nested records (a ControlNet item, a LoRA), by field name."""
    out = {}
    for name, info in model.model_fields.items():
        for arg in _walk_args(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out[info.alias or name] = arg
    return out


def _walk_args(annotation):
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _walk_args(arg)


# ------------------------------------------------------------------ run-time options (workflow and node level)
Attention = Literal[ATTENTION_BACKENDS]  # type: ignore[valid-type]
class StepCache(Fields):
    """A step cache for transformer denoisers (SD3, FLUX.1): diffusers' FirstBlockCacheConfig (first_block: reuse the
    blocks' output while the first block's changes little) or TaylorSeerCacheConfig (taylorseer: predict skipped
    steps). Settings left out take diffusers' defaults."""

    type: Literal[tuple(STEP_CACHES)] = Field(..., description="first_block or taylorseer")  # type: ignore[valid-type]
    threshold: float | None = Field(None, gt=0, le=1, description="first_block: how little the first block's output "
                                                                   "may change for the rest to be reused (default 0.05)")
    cache_interval: int | None = Field(None, ge=1, le=100, description="taylorseer: steps between full computations")
    disable_cache_before_step: int | None = Field(None, ge=0, le=1000, description="taylorseer: full steps first")
    disable_cache_after_step: int | None = Field(None, ge=0, le=1000, description="taylorseer: full steps from here")
    max_order: int | None = Field(None, ge=0, le=4, description="taylorseer: order of the Taylor prediction")

    @model_validator(mode="after")
    def _settings_of_its_type(self):
        wrong = [name for name in ("threshold", "cache_interval", "disable_cache_before_step",
                                   "disable_cache_after_step", "max_order")
                 if getattr(self, name) is not None and name not in STEP_CACHE_SETTINGS[self.type]]
        if wrong:
            raise Invalid(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not a setting of the {self.type} "
                          "step cache", f"it takes {', '.join(STEP_CACHE_SETTINGS[self.type])}; or use the other type")
        return self

    def settings(self) -> dict:
        """The config's keyword arguments that are set."""
        return {name: getattr(self, name) for name in STEP_CACHE_SETTINGS[self.type] if getattr(self, name) is not None}


class CompileOptions(Fields):
    """torch.compile of the denoiser (its nn.Module.compile): torch's own defaults where left out."""

    mode: Literal[COMPILE_MODES] | None = Field(None, description="default, reduce-overhead (CUDA graphs), max-autotune, "  # type: ignore[valid-type]
                                                                  "max-autotune-no-cudagraphs; default: torch's")
    fullgraph: bool | None = Field(None, description="one graph for the whole forward (an error where it breaks); "
                                                      "default: torch's (false)")

    def settings(self) -> dict:
        """torch.compile's keyword arguments that are set."""
        return {name: getattr(self, name) for name in ("mode", "fullgraph") if getattr(self, name) is not None}


Compile = bool | CompileOptions
Quantization = Literal[tuple(QUANTIZATIONS)]  # type: ignore[valid-type]


class QuantizeParts(Fields):
    """Which components load quantized, and how: int8 (torchao's weight-only int8, every device), fp8 (torchao's
    weight-only float8, CUDA), nf4 (bitsandbytes' 4-bit NormalFloat, CUDA)."""

    denoiser: Quantization | None = Field(None, description="the UNet or transformer")
    text_encoders: Quantization | None = Field(None, description="every text encoder of the checkpoint")


Quantize = Quantization | QuantizeParts

