"""Generation nodes: build the diffusers call from node fields and the node's spec, run it, collect image/images/latents."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

from .calls import (
    NodeInputError,
    check_denoising_steps,
    checked_pipeline_kwargs,
    common_arguments,
    run_pipeline,
)
from . import families
from ..core.runtime import RUNTIME_OPTIONS, STEP_CACHES
from .sources import ModelUnavailable, missing_safetensors_explained


class Batch:
    """Tasks of one generation node type computed in one pipeline call (a sweep's variants that differ only in seed
    and the varying fields): one context and fields each, `lead` the one the executor was asked for. The call takes
    the varying fields as lists (or, where they are all equal, num_images_per_prompt), one CPU generator per image
    (diffusers' reproducible batches); `outputs` gets each task's outputs, and each context records the call as its
    own (its prompt, its seed) plus `batch: {size, index, seeds, fields}` (fields: the varying values, where they
    differ), from which `runner reproduce` rebuilds the same call."""

    def __init__(self, contexts: list, fields: list, lead: int, varying: tuple[str, ...]):
        self.contexts, self.fields, self.lead, self.varying = contexts, fields, lead, varying
        self.outputs: list[dict[str, Any]] | None = None
        self.varied: dict[str, list] = {}  # call argument -> each task's value, where they differ
        self.varied_fields: dict[str, list] = {}

    @property
    def seeds(self) -> list[int]:
        return [ctx.seed for ctx in self.contexts]

    def arguments(self, kwargs: dict[str, Any], arguments: dict[str, str]) -> dict[str, Any]:
        """The lead's call arguments made the batch's."""
        from .prompt_embeddings import TEXT_ARGUMENTS

        kwargs = dict(kwargs)
        for field in self.varying:
            values = [getattr(f, field) for f in self.fields]
            if len(set(map(str, values))) > 1 and field in arguments:
                self.varied[arguments[field]] = values
                self.varied_fields[field] = values
        if not self.varied:  # one prompt: diffusers repeats its embeddings, one generator per image
            kwargs["num_images_per_prompt"] = len(self.contexts)
            return kwargs
        for name in TEXT_ARGUMENTS:  # the other texts as lists too (diffusers refuses a str beside a list prompt)
            if isinstance(kwargs.get(name), str):
                kwargs[name] = [kwargs[name]] * len(self.contexts)
        kwargs.update(self.varied)
        return kwargs

    def split(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """Each task's share of the call's outputs (in `outputs`) and its record (its context's info: the lead's, with
        its own varying values and seed); the lead's outputs."""
        import copy

        count = len(self.contexts)
        shares: list[dict[str, Any]] = [{} for _ in range(count)]
        for name, value in outputs.items():
            if name == "image":
                continue
            each = len(value) // count
            for index in range(count):
                part = value[index * each:(index + 1) * each]
                shares[index][name] = part.clone() if hasattr(part, "clone") else part  # not a view of the batch's
        for share in shares:
            if "images" in share:
                share["image"] = share["images"][0]
        lead = self.contexts[self.lead].info
        record = {"size": count, "seeds": self.seeds, **({"fields": self.varied_fields} if self.varied_fields else {})}
        for index, ctx in enumerate(self.contexts):
            info = copy.deepcopy(lead)
            for argument, values in self.varied.items():
                if argument in info.get("call", {}):
                    info["call"][argument] = values[index]
            info["generator"] = {"device": "cpu", "seed": ctx.seed}
            info["batch"] = {"index": index, **record}
            ctx.info = info
        self.outputs = shares
        return shares[self.lead]


def generate_batch(contexts: list, spec, fields: list, lead: int, varying: tuple[str, ...]) -> list[dict[str, Any]]:
    """Tasks of one generation node type that differ only in seed and prompt, in one pipeline call where the
    checkpoint's family batches (its declaration) and the node uses nothing that would make the batch's images other
    than diffusers' batched call documents; otherwise one call each (the same bytes as unbatched runs). A batch whose
    working memory would not fit the memory budget is split in halves until it fits."""
    from .estimate import MemoryEstimateExceeded

    ctx, f = contexts[lead], fields[lead]
    source, identity = node_checkpoint(ctx, f)
    family = ctx.models.family(source, identity)
    if len(contexts) < 2 or _unbatched(family, ctx, f):
        return [generate(member, spec, member_fields) for member, member_fields in zip(contexts, fields)]
    batch = Batch(contexts, fields, lead, varying)
    try:
        generate(ctx, spec, f, batch=batch)
    except MemoryEstimateExceeded:  # the budget's answer to the batch's working memory: halves, until they fit
        for member in contexts:
            member.info = {}
        half, outputs = len(contexts) // 2, []
        for start, end in ((0, half), (half, len(contexts))):
            part_lead = lead - start if start <= lead < end else 0
            outputs.extend(generate_batch(contexts[start:end], spec, fields[start:end], part_lead, varying))
        return outputs
    return batch.outputs


def _unbatched(family, ctx, f) -> str | None:
    """Why these tasks run one call each: the family does not batch, or the node uses what a batched call would
    change (one generator draws a node's several images; weighted prompts and image prompts are per call)."""
    if not family.batches:
        return f"{family.name} does not batch"
    if f.num_images > 1:
        return "num_images above 1 (one generator draws all of a node's images)"
    if getattr(ctx.task, "prompt_syntax", "plain") != "plain":
        return "weighted prompts"
    if getattr(f, "ip_adapter", None) or getattr(f, "adapter", None):
        return "image prompts or T2I-Adapters"
    return None


def generate(ctx, spec, f, batch: Batch | None = None) -> dict[str, Any]:
    """Run a generation node described by `spec` (runner.nodes.generation.GenerationSpec) the way its checkpoint's
    model family does the node's task; what the family cannot do (the task, ControlNets, LoRAs) is refused here.
    `batch`: the other tasks computed in the same call (see generate_batch)."""
    source, identity = node_checkpoint(ctx, f)
    ctx.record(checkpoint=f.model)  # the model whose pipeline made the images: records (A1111 text) name it from here
    family = ctx.models.family(source, identity)
    if family.task(spec.task) is None:
        runs_on = families.either(other.name for other in families.for_task(spec.task)) or "no model family runner knows"
        raise ModelUnavailable(f"model '{source.label}' is {_a(family.name)} model, which {_a(ctx.task.type_name)} node "
                               f"cannot use: it runs on {runs_on} models")
    if getattr(f, "controlnet", None) and not (family.task(spec.task).controlnet and family.controlnet_class):
        raise ModelUnavailable(f"ControlNet is not supported for {family.name} (model '{source.label}') on a "
                               f"{ctx.task.type_name} node in this version of runner",
                               "remove 'controlnet' from this node, or use a model of a family that takes ControlNets "
                               f"({', '.join(f.name for f in families.FAMILIES if f.controlnet_class)})")
    if getattr(f, "ip_adapter", None) and not family.ip_adapter:
        raise ModelUnavailable(f"IP-Adapters are not supported for {family.name} (model '{source.label}') in this "
                               "version of runner", "remove 'ip_adapter' from this node, or use a model of a family "
                               f"that takes them ({', '.join(f.name for f in families.FAMILIES if f.ip_adapter)})")
    if getattr(f, "lora", None) and not family.lora:
        raise ModelUnavailable(f"LoRA is not supported for {family.name} (model '{source.label}') in this version of "
                               "runner", "remove 'lora' from this node, or use a model of a family that loads LoRAs "
                               f"({', '.join(f.name for f in families.FAMILIES if f.lora)})")
    from .families.checks import runtime_option_problems

    for path, message, fix in runtime_option_problems(family, source.label, f):  # as validation refuses them
        raise ModelUnavailable(f"{path[0]}: {message}", fix)
    if getattr(ctx.task, "prompt_syntax", "plain") != "plain":
        from .prompt_weights import weighting_problems

        for path, message, fix in weighting_problems(family, source.label, f, ctx.task.prompt_syntax):
            raise NodeInputError(f"{'.'.join(map(str, path))}: {message}", fix)
    return family.generate(ctx, spec, f, batch=batch)


def node_checkpoint(ctx, f):
    """(source, identity) of the node's checkpoint as it loads for the node: quantized where its quantize: says
    (another model than the plain one, runner.models.quantize)."""
    from .quantize import quantized

    return quantized(*ctx.source(f.model), getattr(f, "quantize", None))


def _a(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" or name.startswith("SD") else "a ") + name


def generate_diffusers(ctx, spec, f, batch: Batch | None = None) -> dict[str, Any]:
    """Families whose checkpoint is one diffusers pipeline and whose tasks derive from it (SD 1.x/2.x, SDXL, any
    AutoPipeline checkpoint), optionally with ControlNets and LoRAs."""
    from PIL import Image

    source, identity = node_checkpoint(ctx, f)
    registry = ctx.models
    family = registry.family(source, identity)
    task = family.task(spec.task)
    items = getattr(f, "controlnet", [])  # node types whose pipelines take no ControlNet have no such field
    controlnets = [ctx.source(item.model) for item in items]
    pag = getattr(f, "pag_scale", None) is not None
    adapters = getattr(f, "adapter", None) or []
    if adapters:
        if not family.adapter_pipeline:
            raise ModelUnavailable(f"T2I-Adapters are not supported for {family.name} (model '{source.label}') in "
                                   "this version of runner", "remove 'adapter' from this node")
        pipe = registry.adapter_pipeline(family.adapter_pipeline, source, identity,
                                         [ctx.source(item.model) for item in adapters])
    else:
        pipe = registry.pipeline(task.autopipeline, source, identity, controlnets, channels=task.channels,
                                 used_by=f"{_a(ctx.task.type_name)} node", controlnet_class=family.controlnet_class,
                                 task=spec.task, pag_layers=tuple(f.pag_applied_layers or ()) if pag else None)
    pipe.scheduler = registry.fresh_scheduler(identity, f.scheduler, family.schedulers)
    _check_steps(pipe.scheduler, f.steps)

    kwargs = common_arguments(f, spec.arguments)
    kwargs.update(spec.inputs(ctx, f))
    start = kwargs.get("image")
    if start is not None and not isinstance(start, Image.Image) and "mask_image" in kwargs:
        kwargs.update(_inpaint_from_latents(ctx, pipe, source, f, start))
    if (spec.size_from_image or task.size_from_input) and isinstance(start, Image.Image):
        # without explicit sizes diffusers' inpaint falls back to the model's default size; keep the input's
        kwargs.setdefault("width", start.width)
        kwargs.setdefault("height", start.height)
    check_denoising_steps(kwargs, pipe)
    if adapters:
        kwargs.update(adapter_arguments(ctx, f, pipe, kwargs))
    if items:
        kwargs.update(controlnet_arguments(ctx, spec, f, kwargs, pipe))
        used = controlnet_values(spec, f, pipe)
        ctx.record(controlnets=[{"model": cn_identity, **values} for (_s, cn_identity), values in zip(controlnets, used)],
                   controlnet_class=type(pipe.controlnet).__name__)
    shared = registry.shared_components.get(identity)
    if shared:
        ctx.record(shared_components=shared)
    kwargs.update(checked_pipeline_kwargs(pipe, f.pipeline_kwargs, spec.arguments))
    if getattr(ctx.task, "only_outputs", None) == ["latents"] and family.latents and \
            "output_type" in inspect.signature(pipe.__call__).parameters and "output_type" not in kwargs:
        # every node reading this one takes its latents: no VAE decode (diffusers' docs hand a base to the refiner so)
        kwargs["output_type"] = "latent"
        ctx.record(decode_skipped="every node reading this one takes its latents")
    own = kwargs  # the call as this node's own (a batch records it so, with its seed)
    if batch is not None:
        kwargs = batch.arguments(kwargs, spec.arguments)
    from .ip_adapters import applied_ip_adapters

    with applied_loras(ctx, pipe, f.lora), memory_options(ctx, pipe, f), freeu(ctx, pipe, getattr(f, "freeu", None)), \
            runtime_options(ctx, pipe, f), applied_ip_adapters(ctx, pipe, getattr(f, "ip_adapter", []), kwargs, source.label):
        recorded = None
        if family.weighted_prompts and getattr(ctx.task, "prompt_syntax", "plain") == "weighted":
            from .prompt_weights import weighted_arguments

            # encoded here, with the node's LoRAs in the text encoders; the call record then shows the embeddings
            kwargs, record = weighted_arguments(pipe, kwargs, inversions=bool(source.entry.embeddings))
            ctx.record(**record)
        elif family.weighted_prompts:  # CLIP-encoded prompts: encoded once per checkpoint and texts, then reused
            from .prompt_embeddings import with_reused_embeddings

            recorded = own if batch is not None else kwargs
            kwargs, note = with_reused_embeddings(ctx, pipe, identity, kwargs, loras=bool(f.lora))
            if note:
                ctx.record(prompt_embeddings=note)
        try:
            return run_pipeline(ctx, pipe, kwargs, spec.arguments, recorded=own if batch is not None else recorded,
                                batch=batch)
        except ValueError as exc:
            if pag and "PAG layer" in str(exc):
                raise NodeInputError(f"pag_applied_layers: {exc}", "name layers by the denoiser's module names, as "
                                     "diffusers matches them: mid, up, down_blocks.1, up_blocks.0.attentions.1") from None
            raise


def _check_steps(scheduler, steps: int | None) -> None:
    """More steps than the scheduler's training timesteps allow fails deep inside diffusers (an IndexError in DDIM)."""
    config = getattr(scheduler, "config", {})
    limit = config.get("num_train_timesteps")
    if steps is None or not isinstance(limit, int):
        return
    most = limit - int(config.get("steps_offset", 0) or 0)
    if steps > most:
        raise NodeInputError(f"steps {steps}: {type(scheduler).__name__} with this checkpoint's schedule "
                             f"({limit} training timesteps, steps_offset {config.get('steps_offset', 0)}) takes at most "
                             f"{most} steps; use fewer steps")


def _inpaint_from_latents(ctx, pipe, source, f, latents) -> dict[str, Any]:
    """Inpainting that starts from a base's latents: only 4-channel UNets can (a 9-channel inpainting UNet is
    conditioned on the VAE encoding of the masked pixels, which latents do not give), and no ControlNet condition."""
    channels = pipe.unet.config.in_channels
    if channels != 4:
        raise NodeInputError(
            f"model '{source.label}' is an inpainting checkpoint ({channels}-channel UNet) that needs the masked image "
            "in pixels (it is conditioned on its VAE encoding): give 'image' (e.g. the base node's image) instead of "
            "'latents', or use a standard checkpoint for latent inpainting")
    if getattr(f, "controlnet", None):
        raise NodeInputError("an inpaint ControlNet needs the image in pixels: give 'image' instead of 'latents' on this "
                             "node, or remove 'controlnet'")
    scale = pipe.vae_scale_factor
    arguments = {"width": latents.shape[-1] * scale, "height": latents.shape[-2] * scale}  # the size comes from the latents
    if "masked_image_latents" in inspect.signature(pipe.__call__).parameters:
        # SD 1.x/2.x inpaint otherwise multiplies the latents with the pixel-size mask; a 4-channel UNet never reads it
        arguments["masked_image_latents"] = latents
    return arguments


def depth_tensor(depth_image):
    """A depth image (near = bright) as the (1, H, W) float tensor that depth2img's depth_map takes."""
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray(depth_image.convert("L"), dtype=np.float32)[None])


def inpaint_condition(image, mask):
    """The inpaint ControlNet condition, built the standard way: pixels in [0, 1], masked pixels set to -1."""
    import numpy as np
    import torch

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    masked = np.asarray(mask.convert("L").resize(image.size), dtype=np.float32) / 255.0 > 0.5
    pixels[masked] = -1.0
    return torch.from_numpy(pixels.transpose(2, 0, 1)[None].copy())


def controlnet_arguments(ctx, spec, f, kwargs: dict[str, Any], pipe) -> dict[str, Any]:
    """The condition images, and scale / start / end where the items set them (else the pipeline's own defaults)."""
    conditions = []
    for item in f.controlnet:
        if item.image is not None:
            conditions.append(ctx.load(item.image).convert("RGB"))
        else:  # validated: only inpaint nodes may leave it out
            conditions.append(inpaint_condition(kwargs["image"], kwargs["mask_image"]))
    single = len(f.controlnet) == 1

    def one_or_list(values: list) -> Any:
        return values[0] if single else values

    # SD and SDXL text-to-image take the condition as `image`; the others (and every SD3 / FLUX pipeline) as
    # `control_image`
    takes = inspect.signature(pipe.__call__).parameters
    condition = spec.controlnet_condition if spec.controlnet_condition in takes else "control_image"
    arguments = {condition: one_or_list(conditions)}
    used = controlnet_values(spec, f, pipe)
    for field, argument in spec.controlnet_arguments.items():
        if all(getattr(item, field) is None for item in f.controlnet):
            continue  # not sent: the pipeline's own default
        arguments[argument] = one_or_list([values[field] for values in used])
    return arguments


def adapter_arguments(ctx, f, pipe, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The T2I-Adapters' condition images (grey or colour, as each adapter takes them: its in_channels), their
    scales where set, and the conditioning factor; sizes must be multiples of the adapters' downscale factor."""
    models = list(pipe.adapter.adapters) if hasattr(pipe.adapter, "adapters") else [pipe.adapter]
    factor = max(model.config.downscale_factor for model in models)
    default = pipe.unet.config.sample_size * pipe.vae_scale_factor
    for side in ("width", "height"):
        value = kwargs.get(side, default)
        if value % factor:
            raise NodeInputError(f"{side} {value}: the T2I-Adapter works on sizes in steps of {factor} pixels",
                                 f"use a multiple of {factor}, e.g. {max(factor, round(value / factor) * factor)}")
    images = [ctx.load(item.image).convert("L" if model.config.in_channels == 1 else "RGB")
              for item, model in zip(f.adapter, models)]
    single = len(images) == 1
    arguments: dict[str, Any] = {"image": images[0] if single else images}
    if any(item.scale is not None for item in f.adapter) or not single:
        # the pipelines' default is one 1.0, which a MultiAdapter cannot read (it iterates the scale): one each
        scales = [1.0 if item.scale is None else item.scale for item in f.adapter]
        arguments["adapter_conditioning_scale"] = scales[0] if single else scales
    if f.adapter_conditioning_factor is not None:
        arguments["adapter_conditioning_factor"] = f.adapter_conditioning_factor
    ctx.record(adapters=[{"model": ctx.source(item.model)[1], "scale": item.scale} for item in f.adapter],
               adapter_class=type(pipe.adapter).__name__)
    return arguments


def controlnet_values(spec, f, pipe) -> list[dict[str, Any]]:
    """Each ControlNet item's scale / start / end: as set, else the pipeline's own default (diffusers broadcasts a
    single default to every ControlNet of several)."""
    parameters = inspect.signature(pipe.__call__).parameters
    used = []
    for index, item in enumerate(f.controlnet):
        values = {}
        for field, argument in spec.controlnet_arguments.items():
            value = getattr(item, field)
            if value is None and argument in parameters:
                default = parameters[argument].default
                value = default[index] if isinstance(default, (list, tuple)) else default
            values[field] = value
        used.append(values)
    return used


class memory_options:
    """Per-node memory savers on the shared pipeline for one call: attention slicing, VAE tiling, CPU offload."""

    def __init__(self, ctx, pipe, f):
        self.ctx, self.pipe = ctx, pipe
        self.slicing, self.tiling = f.attention_slicing, f.vae_tiling
        self.offload = f.offload or ctx.task.offload

    def __enter__(self):
        if self.slicing:
            self.pipe.enable_attention_slicing()
        if self.tiling:
            vae = getattr(self.pipe, "vae", None)
            if vae is None or not hasattr(vae, "enable_tiling"):
                self.ctx.warn(f"vae_tiling: {type(self.pipe).__name__} has no VAE that tiles; running without it")
                self.tiling = False
            else:
                vae.enable_tiling()
        if self.offload != "none":
            device = self.ctx.models.device
            if not device.startswith("cuda"):
                message = f"offload '{self.offload}' needs a CUDA device; running without it on {device}"
                self.ctx.warn(message)
                self.ctx.record(offload=f"ignored ({message})")
                self.offload = "none"
            else:
                index = int(device.split(":")[1]) if ":" in device else 0
                if self.offload == "model":
                    self.pipe.enable_model_cpu_offload(gpu_id=index)
                elif self.offload == "group":  # diffusers' group offloading, as its docs call it
                    import torch

                    self.pipe.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"),
                                                   offload_type="leaf_level", use_stream=True)
                else:
                    self.pipe.enable_sequential_cpu_offload(gpu_id=index)
                self.ctx.record(offload=self.offload)
        return self

    def __exit__(self, *exc):
        # the modules are shared with other nodes' pipelines: leave them as they were
        if self.slicing:
            self.pipe.disable_attention_slicing()
        if self.tiling:
            self.pipe.vae.disable_tiling()
        if self.offload == "group":
            remove_group_offload(self.pipe)
        if self.offload != "none":
            self.pipe.remove_all_hooks()
            self.pipe.to(self.ctx.models.device)
        return False


def remove_group_offload(pipe) -> None:
    """Group offloading off again (diffusers has no public call for it): its hooks removed from every component, as
    diffusers' own _maybe_remove_and_reapply_group_offloading removes them; the caller moves the modules back."""
    import torch
    from diffusers.hooks import HookRegistry
    from diffusers.hooks import group_offloading as hooks

    names = (hooks._GROUP_OFFLOADING, hooks._LAYER_EXECUTION_TRACKER, hooks._LAZY_PREFETCH_GROUP_OFFLOADING)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            registry = HookRegistry.check_if_exists_or_initialize(component)
            for name in names:
                registry.remove_hook(name, recurse=True)


class runtime_options:
    """The node's run-time options on the (shared) pipeline for one call, undone after it: the VAE's slicing, the
    channels-last memory format of the denoiser and VAE, the denoiser's attention backend, its compiled code, a step
    cache. (quantize is applied where the checkpoint loads: runner.models.quantize; recorded here with the rest.)"""

    def __init__(self, ctx, pipe, f):
        self.ctx, self.pipe = ctx, pipe
        self.options = {name: getattr(f, name, None) for name in RUNTIME_OPTIONS}
        self.denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        self.done: list = []

    def __enter__(self):
        options, pipe, denoiser = self.options, self.pipe, self.denoiser
        if options["vae_slicing"]:
            vae = getattr(pipe, "vae", None)
            if vae is None or not hasattr(vae, "enable_slicing"):
                raise NodeInputError(f"vae_slicing: {type(pipe).__name__} has no VAE that slices", "remove vae_slicing")
            vae.enable_slicing()
            self.done.append(vae.disable_slicing)
        if options["channels_last"]:
            import torch

            modules = [module for module in (denoiser, getattr(pipe, "vae", None)) if module is not None]
            for module in modules:
                module.to(memory_format=torch.channels_last)
            self.done.append(lambda: [module.to(memory_format=torch.contiguous_format) for module in modules])
        if options["attention"]:
            if denoiser is None or not hasattr(denoiser, "set_attention_backend"):
                raise NodeInputError(f"attention: {type(pipe).__name__}'s denoiser takes no attention backend",
                                     "remove attention")
            try:
                denoiser.set_attention_backend(options["attention"])
            except (ImportError, RuntimeError, ValueError) as exc:
                raise NodeInputError(f"attention {options['attention']}: {(str(exc).splitlines() or [''])[0][:300]}",
                                     "use attention: native (PyTorch's own, on every device), or install what the "
                                     "backend needs on a CUDA machine") from None
            self.done.append(denoiser.reset_attention_backend)
        if options["compile"]:
            self._compile(denoiser, options["compile"])
        if options["step_cache"]:
            import diffusers

            config = getattr(diffusers, STEP_CACHES[options["step_cache"].type])(**options["step_cache"].settings())
            denoiser.enable_cache(config)
            self.done.append(denoiser.disable_cache)
        used = {name: (value.model_dump(exclude_none=True) if hasattr(value, "model_dump") else value)
                for name, value in options.items() if value}
        if used:
            self.ctx.record(runtime_options=used)
        return self

    def _compile(self, denoiser, value) -> None:
        """torch.compile of the denoiser (nn.Module.compile, in place: the pipelines sharing it stay as they are),
        compiled once per module and settings and kept on it, so later calls in the Session reuse the compiled code;
        uncompiled again after the call."""
        settings = value.settings() if hasattr(value, "settings") else {}
        kept = denoiser.__dict__.setdefault("_runner_compiled", {})
        key = tuple(sorted(settings.items()))
        if key in kept:
            denoiser._compiled_call_impl = kept[key]
            self.ctx.record(compiled="reused (compiled earlier in this Session)")
        else:
            denoiser.compile(**settings)
            kept[key] = denoiser._compiled_call_impl
            self.ctx.record(compiled="compiled for this call (torch.compile: its first call takes longer)")
        self.done.append(lambda: setattr(denoiser, "_compiled_call_impl", None))

    def __exit__(self, *exc):
        for undo in reversed(self.done):
            undo()
        return False


class freeu:
    """FreeU on the (shared) pipeline's UNet for one call (diffusers' enable_freeu), switched off again after it."""

    def __init__(self, ctx, pipe, values):
        self.ctx, self.pipe, self.values = ctx, pipe, values

    def __enter__(self):
        if self.values is not None:
            if not hasattr(self.pipe, "enable_freeu"):
                raise NodeInputError(f"freeu: {type(self.pipe).__name__} has no FreeU (it is a UNet's: SD and SDXL "
                                     "pipelines)", "remove freeu from this node")
            self.pipe.enable_freeu(**{name: getattr(self.values, name) for name in ("s1", "s2", "b1", "b2")})
        return self

    def __exit__(self, *exc):
        if self.values is not None and hasattr(self.pipe, "disable_freeu"):
            self.pipe.disable_freeu()
        return False


class applied_loras:
    """Load the node's LoRAs into the (shared) pipeline for one call, then remove them: the base is not reloaded."""

    def __init__(self, ctx, pipe, loras):
        self.ctx, self.pipe, self.loras = ctx, pipe, list(loras)

    def __enter__(self):
        if not self.loras:
            return self
        names, weights = [], []
        for index, item in enumerate(self.loras):
            source, identity = self.ctx.source(item.model)
            location, kwargs = self.ctx.models.pretrained_args(source)
            name = f"lora_{index}"
            allowed = {k: v for k, v in kwargs.items()
                       if k in ("revision", "cache_dir", "local_files_only", "subfolder", "use_safetensors")}
            if source.kind == "file":
                location, allowed["weight_name"] = str(Path(location).parent), Path(location).name
            with warnings.catch_warnings(), missing_safetensors_explained(source):
                # peft warns whenever a second adapter joins the first: that is the point here
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                self.pipe.load_lora_weights(location, adapter_name=name, **allowed)
            names.append(name)
            weights.append(item.scale)
        self.pipe.set_adapters(names, adapter_weights=weights)
        self.ctx.record(loras=[{"model": self.ctx.source(i.model)[1], "scale": i.scale} for i in self.loras])
        return self

    def __exit__(self, *exc):
        if self.loras:
            self.pipe.unload_lora_weights()
        return False


__all__ = ["generate", "ModelUnavailable", "NodeInputError"]
