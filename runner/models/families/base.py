"""What a model family is to the rest of runner: one declaration the generic code asks, instead of testing names.

A family (SD 1.x/2.x, SDXL, Kandinsky 2.2, ...) says how to recognise its checkpoints (the pipeline classes their
model_index.json names, or hub ids when nothing is cached), which generation tasks it does and how (the AutoPipeline
that derives each task's pipeline from the checkpoint, or the checkpoint's own class, and the denoiser input
channels the task needs), whether it takes ControlNets (of which class) and LoRAs, its scheduler names, and the
function that runs its generation nodes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Task:
    """How a family does one generation task (a generation node type's `task`)."""

    autopipeline: str | None = None  # derives the task's pipeline from the checkpoint (None: the checkpoint's own class)
    channels: tuple[int, ...] = ()  # the denoiser input channels the checkpoint must take for it (empty: any)
    controlnet: bool = False  # whether it takes the family's ControlNets
    classes: tuple[str, ...] = ()  # the pipeline classes it calls where no AutoPipeline maps it (for docs)
    example: str = ""  # a checkpoint made for this task (for fix lines)
    size_from_input: bool = False  # without width/height, runner passes the input image's size (else the pipeline's)


@dataclass(frozen=True)
class Family:
    key: str  # how runner refers to it internally (only the family's own module spells it)
    name: str  # in users' words, for messages and `runner nodes`
    classes: tuple[str, ...]  # checkpoint pipeline classes (model_index.json `_class_name`) that are this family
    tasks: dict[str, Task]
    runner: str  # "module:function" running a generation node on it: (ctx, spec, fields) -> outputs
    controlnet_class: str | None = None  # the diffusers class of its ControlNets (None: it takes none)
    lora: bool = True  # whether diffusers loads LoRAs into it
    freeu: bool = False  # whether its pipelines apply FreeU (enable_freeu: a UNet's)
    embeddings: bool = False  # whether its pipelines load textual-inversion embeddings (load_textual_inversion)
    # whether prompt_syntax: weighted encodes its prompts (compel, from CLIP text encoders: prompt_embeds)
    weighted_prompts: bool = False
    ip_adapter: bool = False  # whether diffusers loads IP-Adapters into its pipelines
    # whether they take per-block scales and masks (the UNet processors' InstantStyle dicts, IPAdapterMaskProcessor)
    ip_adapter_blocks: bool = False
    # the diffusers pipeline running its text-to-image with T2I-Adapters (None: it takes none), and whether that
    # pipeline takes adapter_conditioning_factor
    adapter_pipeline: str | None = None
    adapter_factor: bool = False
    weighted_clip_skip: tuple[int, ...] = ()  # the clip_skip values that weighted encoding can do for it
    hub_hints: tuple[str, ...] = ()  # parts of hub ids that name it when its files are not here to read
    examples: dict[str, str] = field(default_factory=dict)  # "checkpoint", "controlnet": ids for fix lines
    # short scheduler name -> (diffusers class, config overrides); None: runner's usual set (runner.models.schedulers)
    schedulers: dict[str, tuple[str, dict]] | None = None
    # whether a ControlNet's config (config.json, with `_class_name`) says it was made for this family
    controlnet_fits: Callable[[dict], bool] | None = None
    # whether its ControlNets take scale / start / end, and how many one node may stack (None: any number)
    controlnet_settings: bool = True
    controlnet_most: int | None = None
    size_multiple: int = 8  # image sides must be multiples of this (the VAE factor x the denoiser's patch size)
    latents: bool = False  # whether its img2img / inpaint / refine take another node's latents (`latents:`)
    # whether its generation nodes apply the run-time options (vae_slicing, channels_last, attention), and whether its
    # denoiser takes a step cache (diffusers' enable_cache: the transformer families)
    runtime_options: bool = True
    step_cache: bool = False
    # "module:function" writing a generation node on it into an export script (`runner export`): (script, spec,
    # fields); None: the export refuses its nodes, naming them
    exporter: str | None = None
    # the widths of the text its UNet's cross-attention reads, in its real checkpoints (tells a UNet LoRA's family)
    text_widths: tuple[int, ...] = ()
    # how to recognise its single-file checkpoints from their tensor names: alternatives, each a set of key prefixes
    # that must all occur (e.g. the original layout's UNet and its text encoders)
    single_file_keys: tuple[tuple[str, ...], ...] = ()
    # a transformer family's single files: the hub repository whose config files read one (from its tensor names;
    # None: runner's shipped configs, the SD way), and config values its weights decide
    single_file_config: Callable[[list[str]], str] | None = None
    single_file_overrides: Callable[[list[str]], dict] | None = None
    # the key prefixes of each component its whole single files may hold besides the denoiser
    single_file_parts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # a prior + decoder family's settings for runner.models.families.prior_decoder (its Line, less the family)
    prior_decoder: dict[str, Any] | None = None
    # whether a LoRA fits a checkpoint, from what its files say (runner.models.configs.lora_facts) and the
    # checkpoint's denoiser config; None: not known before loading
    lora_fits: Callable[[dict, dict], bool] | None = None
    # whether its runner computes several tasks (a sweep's variants differing in seed and prompt) in one pipeline
    # call: a prompt list and one CPU generator per image, as diffusers documents for reproducible batches
    batches: bool = False

    def reads_keys(self, keys) -> bool:
        """Whether a single file with these tensor names is one of its checkpoints."""
        return any(all(any(key.startswith(prefix) for key in keys) for prefix in alternative)
                   for alternative in self.single_file_keys)

    def reads_lora_width(self, width: int | None) -> bool:
        """Whether a UNet LoRA whose cross-attention reads text this wide may be one of its (None: unknown)."""
        return not self.text_widths or width is None or width in self.text_widths

    def task(self, name: str) -> Task | None:
        return self.tasks.get(name)

    def generate(self, ctx, spec, fields, batch=None) -> dict[str, Any]:
        """Run a generation node; `batch` (only where the family `batches`): the other tasks computed in the same call
        (runner.models.generate.Batch), whose outputs come back in its `outputs`."""
        module, function = self.runner.split(":")
        run = getattr(importlib.import_module(module), function)
        return run(ctx, spec, fields) if batch is None else run(ctx, spec, fields, batch=batch)

    def export(self, script, spec, fields) -> None:
        """Write a generation node on this family into an export script (runner.engine.export.Script)."""
        module, function = self.exporter.split(":")
        getattr(importlib.import_module(module), function)(script, spec, fields)

    def example(self, what: str) -> str:
        return self.examples.get(what, "")
