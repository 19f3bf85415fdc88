"""Generation nodes as the lines of an exported diffusers script (`runner export`).

`export_generate` is `generate`'s twin: it asks the checkpoint's family, from its files (nothing loads), how the
node's task runs, and the family's exporter writes the loading (from_pretrained once per model, from_pipe for the
pipelines derived from it, as diffusers' docs do) and the call, with the arguments `generate_diffusers` passes, in
its order. What an exporter cannot write is refused by the node's id (script.unsupported), never dropped.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from . import families

LATENTS_HELPER = '''
class KeepLatents:
    """callback_on_step_end keeping the latents of the last step (what runner hands on as a node's `latents`)."""

    def __call__(self, pipe, step, timestep, callback_kwargs):
        self.latents = callback_kwargs["latents"]
        return callback_kwargs
'''

CLIP_SKIP_HELPER = '''
def clip_skip_bridge(pipe):
    """transformers 5 builds CLIPTextModel flat, while diffusers 0.42 reads the final layer norm through
    `text_encoder.text_model` for clip_skip: name the encoder itself so (a plain attribute; weights unchanged)."""
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        encoder = getattr(pipe, name, None)
        if encoder is not None and hasattr(encoder, "final_layer_norm") and not hasattr(encoder, "text_model"):
            object.__setattr__(encoder, "text_model", encoder)
'''

WEIGHTED_HELPER = '''
def weighted_prompt_embeds(pipe, prompt, negative_prompt=None, prompt_2=None, negative_prompt_2=None, clip_skip=None,
                           inversions=None):
    """The call's prompt embeddings for prompts given as (text, weight) fragments, through compel, configured as
    compel's CompelForSD / CompelForSDXL are: prompts longer than 77 tokens in chunks; SD: the last layer (clip_skip
    1: the penultimate, normalized); SDXL: both encoders' penultimate layers joined, the second's pooled output of the
    plain words, zeros for a missing negative prompt where the checkpoint forces them (runner's prompt_syntax).
    `inversions`: a textual-inversion manager class, where the checkpoint loaded embeddings."""
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    if sdxl:
        kind = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
    elif clip_skip:
        kind = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NORMALIZED
    else:
        kind = ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED
    encoders = [(getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)),
                (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None))]
    compels = [Compel(tokenizer=tokenizer, text_encoder=encoder, truncate_long_prompts=False,
                      textual_inversion_manager=inversions(pipe, tokenizer) if inversions else None,
                      returned_embeddings_type=kind, requires_pooled=sdxl and encoder is pipe.text_encoder_2)
               for tokenizer, encoder in encoders if encoder is not None]

    def conditioning(compel, fragments):
        flat = FlattenedPrompt([Fragment(text, weight) for text, weight in fragments] or [Fragment("", 1.0)])
        return compel.build_conditioning_tensor_for_conjunction(Conjunction([flat]))[0]

    def same_chunks(left, right):  # CompelForSDXL: the shorter encoder's embeddings padded with its encoding of ""
        if left.shape[1] > right.shape[1]:
            padding = conditioning(compels[1], [])
            right = torch.cat([right, padding.repeat(right.shape[0], (left.shape[1] - right.shape[1]) // padding.shape[1], 1)], dim=1)
        elif right.shape[1] > left.shape[1]:
            padding = conditioning(compels[0], [])
            left = torch.cat([left, padding.repeat(left.shape[0], (right.shape[1] - left.shape[1]) // padding.shape[1], 1)], dim=1)
        return left, right

    texts = [[prompt, negative_prompt or []], [prompt_2 or prompt, negative_prompt_2 or negative_prompt or []]][:len(compels)]
    embeds = {}
    with torch.no_grad():
        per_encoder = [compel.pad_conditioning_tensors_to_same_length([conditioning(compel, text) for text in pair])
                       for compel, pair in zip(compels, texts)]
        if len(compels) == 2:
            for index in range(2):
                per_encoder[0][index], per_encoder[1][index] = same_chunks(per_encoder[0][index], per_encoder[1][index])
        embeds["prompt_embeds"], embeds["negative_prompt_embeds"] = [
            torch.cat([pair[index] for pair in per_encoder], dim=-1) for index in range(2)]
        if sdxl:
            pooler, (pooled, negative_pooled) = compels[-1].conditioning_provider, texts[-1]
            embeds["pooled_prompt_embeds"] = pooler.get_pooled_embeddings([" ".join(text for text, _ in pooled)])
            embeds["negative_pooled_prompt_embeds"] = pooler.get_pooled_embeddings(
                [" ".join(text for text, _ in negative_pooled)])
            if negative_prompt is None and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
                embeds["negative_prompt_embeds"] = torch.zeros_like(embeds["prompt_embeds"])
                embeds["negative_pooled_prompt_embeds"] = torch.zeros_like(embeds["pooled_prompt_embeds"])
    return embeds
'''

INVERSIONS_HELPER = '''
class InversionManager(BaseTextualInversionManager):
    """compel's DiffusersTextualInversionManager for any of the pipeline's tokenizers (compel's own reads the first)."""

    def __init__(self, pipe, tokenizer):
        self.pipe, self.tokenizer = pipe, tokenizer

    def expand_textual_inversion_token_ids_if_necessary(self, token_ids):
        if not token_ids:
            return token_ids
        prompt = self.pipe.maybe_convert_prompt(self.tokenizer.decode(token_ids), self.tokenizer)
        return self.tokenizer.encode(prompt, add_special_tokens=False)
'''


def export_generate(script, spec, f) -> None:
    """Write a generation node (runner.nodes.generation.GenerationSpec `spec`, fields `f`) into `script`."""
    source = script.source(f.model)
    family = families.detect(source)
    if family is None:
        raise script.unsupported(f"the model family of '{source.label}' is known only once it is loaded (its files are "
                                 "not here to read)", "download it first (runner pull), or run the workflow once")
    if family.task(spec.task) is None or family.exporter is None:
        raise script.unsupported(f"{family.name} models cannot be written as a diffusers script in this version of "
                                 "runner")
    from .families.checks import runtime_option_problems

    for path, message, fix in runtime_option_problems(family, source.label, f):  # refused as validation and a run
        raise script.unsupported(f"{path[0]}: {message}", fix)
    family.export(script, spec, f)


# ---------------------------------------------------------------- loading
def pretrained_call(script, source, what: str) -> tuple[str, list[str], str]:
    """(the first argument of from_pretrained, its keyword arguments, a comment) as source, for a model source."""
    entry = source.entry
    if source.kind == "tiny":
        location = str(script.registry.model_folder(source).resolve())
        comment = f"  # {source.label}: runner's tiny stand-in, built in runner's model folder"
    else:
        location, comment = source.location, ""
    kwargs = ["torch_dtype=dtype"]
    if not entry.allow_pickle:
        kwargs.append("use_safetensors=True")
    if entry.variant:
        kwargs.append(f"variant={script.literal(entry.variant)}")
    if entry.subfolder:
        kwargs.append(f"subfolder={script.literal(entry.subfolder)}")
    if source.kind == "hub" and entry.revision:
        kwargs.append(f"revision={script.literal(entry.revision)}")
    if entry.trust_remote_code:
        kwargs.append("trust_remote_code=True")
    return script.literal(location), kwargs, comment


def from_pretrained(script, variable: str, class_name: str, source, what: str) -> None:
    """`variable = CLASS.from_pretrained(...)` and its move to the device, in the script's models section."""
    location, kwargs, comment = pretrained_call(script, source, what)
    script.need(f"from diffusers import {class_name}")
    script.model_line(f"{variable} = {class_name}.from_pretrained({', '.join([location, *kwargs])}){comment}")
    script.model_line(f"{variable}.to(device)")


def source_key(source) -> tuple:
    """What tells two model sources apart for the script's loading (one variable each): kind, place, whole entry."""
    return source.kind, source.location, source.entry.model_dump_json(), source.quantize


def _model_name(script, ref: str) -> str:
    return ref[len("$models."):] if ref.startswith("$models.") else f"{script.node_id}_model"


def checkpoint(script, ref: str, source) -> str:
    """The variable of the checkpoint's own pipeline (loaded once, at the top)."""
    key = ("checkpoint", *source_key(source))
    if key in script.model_vars:
        return script.model_vars[key]
    variable = script.name(_model_name(script, ref))
    if source.kind == "file":
        if source.quantize:
            raise script.unsupported(f"quantize: '{source.label}' is a single file, which runner does not load "
                                     "quantized", "remove quantize, or use the model as a diffusers folder or hub id")
        _single_file(script, variable, source)
        script.model_vars[key] = variable
        return variable
    location, kwargs, comment = pretrained_call(script, source, "checkpoint")
    kwargs += _parts(script, variable, source)
    if source.quantize:  # quantize: (runner.models.quantize)
        from .quantize import components, config_expression

        mapping = components(source, script.registry.model_folder(source))
        kwargs.append(f"quantization_config={config_expression(script, mapping, 'dtype')}")
    script.need("from diffusers import DiffusionPipeline")
    script.model_line(f"{variable} = DiffusionPipeline.from_pretrained({', '.join([location, *kwargs])}){comment}")
    _embeddings(script, variable, source)
    script.model_line(f"{variable}.to(device)")
    script.model_vars[key] = variable
    return variable


def _single_file(script, variable: str, source) -> None:
    """A single-file SD / SDXL checkpoint as diffusers' docs load one: CLASS.from_single_file with the diffusers
    config of its architecture (the entry's config:, or runner's copy of diffusers' own; runner.models.single_file)."""
    from . import families
    from .single_file import ARCHITECTURES, architecture_of, packaged_config, pipeline_class

    family = families.from_files(source)
    if family is not None and family.single_file_config is not None:
        raise script.unsupported(f"'{source.label}' is a single-file {family.name} checkpoint, which the export does "
                                 "not write yet", "point the model at a diffusers folder or a hub id")
    config = script.registry.single_file_config(source)
    note = "its entry's config"
    if config is None:
        architecture = architecture_of(source.location, source.label)
        config = packaged_config(architecture, script.registry.models_dir)
        note = f"runner's copy of the config of {ARCHITECTURES[architecture][1]}, diffusers' own for this architecture"
    cls = pipeline_class(config).__name__
    parts = _parts(script, variable, source)
    script.need(f"from diffusers import {cls}")
    script.model_line(f"# {source.label}: one file, read with {note}")
    arguments = [script.literal(str(Path(source.location).resolve())), f"config={script.literal(str(config.resolve()))}",
                 "local_files_only=True", "torch_dtype=dtype", *parts]
    script.model_line(f"{variable} = {cls}.from_single_file({', '.join(arguments)})")
    script.model_line(f"{variable}.to(device)")
    script.state[("class", variable)] = cls


def _parts(script, variable: str, source) -> list[str]:
    """The parts the model entry swaps in (vae:, text_encoder...:), loaded as diffusers documents swapping them
    (runner.models.parts): `from_pretrained(..., vae=vae)`; returns those keyword arguments."""
    import json

    from ..core.model_entry import PARTS
    from .sources import part_source

    arguments = []
    for part in PARTS:
        if not getattr(source.entry, part, None):
            continue
        given = part_source(source, part)
        location, kwargs, comment = pretrained_call(script, given, part)
        kwargs = [k for k in kwargs if not k.startswith("variant=")]
        name = script.name(f"{variable}_{part}")
        folder = script.registry.model_folder(given) if given.kind != "file" else None
        if folder is not None and (folder / "model_index.json").is_file():
            kwargs.append(f"subfolder={script.literal(part)}")  # a pipeline folder: its part's subfolder
        if part == "vae":
            script.need("from diffusers import AutoencoderKL")
            if given.kind == "file":
                own = script.registry.model_folder(source) if source.kind != "file" else None
                kwargs = [k for k in kwargs if not k.startswith("use_safetensors=")]
                if own is not None and (own / "vae" / "config.json").is_file():
                    kwargs += [f"config={script.literal(str(own.resolve()))}", 'subfolder="vae"']
                script.model_line(f"{name} = AutoencoderKL.from_single_file({', '.join([location, *kwargs])}){comment}")
            else:
                script.model_line(f"{name} = AutoencoderKL.from_pretrained({', '.join([location, *kwargs])}){comment}")
        else:
            if given.kind == "file":
                raise script.unsupported(f"model '{source.label}' swaps in its {part} from a single file, which the "
                                         "export does not write yet")
            own = script.registry.model_folder(source) if source.kind != "file" else None
            index = json.loads((own / "model_index.json").read_text()) if own and (own / "model_index.json").is_file() else {}
            class_name = (index.get(part) or [None, None])[1]
            if not class_name:
                raise script.unsupported(f"the text encoder class of '{source.label}' is not known here")
            script.need(f"from transformers import {class_name}")
            script.model_line(f"{name} = {class_name}.from_pretrained({', '.join([location, *kwargs])}){comment}")
        arguments.append(f"{part}={name}")
    return arguments


def file_expression(script, source, path: Path) -> str:
    """Python source naming a model's file: hf_hub_download for a hub model (the script finds it in the user's hub
    cache), else the path runner reads."""
    if source.kind != "hub":
        return script.literal(str(path.resolve()))
    folder = script.registry.files_folder(source, ["*"])
    relative = path.relative_to(folder)
    script.need("from huggingface_hub import hf_hub_download")
    arguments = [script.literal(source.location), script.literal(relative.as_posix())]
    if source.entry.subfolder:
        arguments.append(f"subfolder={script.literal(source.entry.subfolder)}")
    if source.entry.revision:
        arguments.append(f"revision={script.literal(source.entry.revision)}")
    return f"hf_hub_download({', '.join(arguments)})"


def _embeddings(script, pipe: str, source) -> None:
    """The entry's textual-inversion embeddings loaded as diffusers' docs load them (runner's load_embeddings)."""
    from .embeddings import WEIGHT_NAME
    from .sources import embedding_sources
    from .weights_file import safetensors_header

    for token, embedding in embedding_sources(source).items():
        path = script.registry.weights_file(embedding, "embedding", WEIGHT_NAME)
        header = safetensors_header(path) or {}
        names = {name for name in header if name != "__metadata__"}
        script.need("from safetensors.torch import load_file")
        vectors = script.name("embedding")
        script.model_line(f"{vectors} = load_file({file_expression(script, embedding, path)})  # {embedding.label}")
        if names <= {"clip_l", "clip_g"} and "clip_g" in names:  # SDXL's: one set per text encoder
            script.model_line(f'{pipe}.load_textual_inversion({vectors}["clip_g"], token={script.literal(token)}, '
                              f"text_encoder={pipe}.text_encoder_2, tokenizer={pipe}.tokenizer_2)")
            script.model_line(f'{pipe}.load_textual_inversion({vectors}["clip_l"], token={script.literal(token)}, '
                              f"text_encoder={pipe}.text_encoder, tokenizer={pipe}.tokenizer)")
        else:
            script.model_line(f"{pipe}.load_textual_inversion({vectors}, token={script.literal(token)})")


def controlnet(script, ref: str, source, class_name: str) -> str:
    key = ("controlnet", class_name, *source_key(source))
    if key in script.model_vars:
        return script.model_vars[key]
    variable = script.name(_model_name(script, ref))
    from_pretrained(script, variable, class_name, source, "ControlNet")
    script.model_vars[key] = variable
    return variable


def transformers_pipeline(script, ref: str, source, task: str) -> str:
    """The variable of a transformers pipeline (`pipeline(task, model=...)`), loaded once, at the top, as runner's
    registry loads it (runner.models.registry.depth_estimator)."""
    key = ("transformers", task, *source_key(source))
    if key in script.model_vars:
        return script.model_vars[key]
    if source.kind == "file":
        raise script.unsupported(f"'{source.label}' is a single file; a transformers pipeline loads a folder or hub id")
    location, kwargs, comment = pretrained_call(script, source, task)
    variable = script.name(_model_name(script, ref) if ref.startswith("$models.") else f"{script.node_id}_model")
    extra = []
    for name in ("revision", "trust_remote_code"):
        extra += [k for k in kwargs if k.startswith(name + "=")]
    model_kwargs = [k for k in kwargs if k.startswith("use_safetensors=")]
    script.need("from transformers import pipeline")
    arguments = [script.literal(task), f"model={location}", "device=device", "dtype=dtype", *extra]
    if model_kwargs:
        arguments.append("model_kwargs={" + ", ".join(f'"{k.split("=")[0]}": {k.split("=")[1]}' for k in model_kwargs) + "}")
    script.model_line(f"{variable} = pipeline({', '.join(arguments)}){comment}")
    script.model_vars[key] = variable
    return variable


def derived_class(autopipeline: str | None, checkpoint_class: str, controlnet: bool, pag: bool) -> type:
    """The pipeline class `autopipeline.from_pipe(checkpoint, ...)` makes, as diffusers' AutoPipelines pick it."""
    import diffusers
    from diffusers.pipelines import auto_pipeline

    if autopipeline is None:
        return getattr(diffusers, checkpoint_class)
    mapping = {"AutoPipelineForText2Image": auto_pipeline.AUTO_TEXT2IMAGE_PIPELINES_MAPPING,
               "AutoPipelineForImage2Image": auto_pipeline.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING,
               "AutoPipelineForInpainting": auto_pipeline.AUTO_INPAINT_PIPELINES_MAPPING}[autopipeline]
    cls = auto_pipeline._get_task_class(mapping, checkpoint_class)
    if not (controlnet or pag):
        return cls
    # the AutoPipeline mappings name each variant by the model's key: stable-diffusion-xl-controlnet-pag
    key = next(name for name, value in mapping.items() if value is cls)
    wanted = key + ("-controlnet" if controlnet else "") + ("-pag" if pag else "")
    if wanted not in mapping:
        raise ValueError(f"diffusers has no {autopipeline} pipeline for {checkpoint_class}"
                         + (" with a ControlNet" if controlnet else "") + (" with PAG" if pag else ""))
    return mapping[wanted]


# ---------------------------------------------------------------- the call
def call_lines(script, pipe: str, kwargs: dict[str, str], result: str, *, fresh_generator: bool = True) -> None:
    """`result = pipe(...)` with one argument per line, the generator seeded as runner seeds it (`fresh_generator`
    False: the `generator` an earlier call of the node drew from, as a prior's)."""
    if fresh_generator:
        script.line(f"generator = torch.Generator(\"cpu\").manual_seed({script.seed})  # {script.seed_comment()}")
    script.line(f"torch.manual_seed({script.seed})  # the global generator too, as runner does (some pipelines draw from it)")
    script.line(f"{result} = {pipe}(")
    for name, value in kwargs.items():
        value, _, comment = value.partition("  # ")
        written = f"    {name}," if name.startswith("**") else f"    {name}={value},"
        script.line(written + (f"  # {comment}" if comment else ""))
    script.line("    generator=generator,")
    script.line(")")


class _Source:
    """A value known only when the script runs, as its Python source (what the script's literal writes)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _ConfigSource:
    """A scheduler config as the script reads it: `.get(KEY, DEFAULT)` gives that expression."""

    def __init__(self, text: str):
        self.text = text

    def get(self, key: str, default=None) -> _Source:
        return _Source(f"{self.text}.get({json.dumps(key)}, {default!r})")


def export_diffusers(script, spec, f) -> None:
    """The families whose checkpoint is one diffusers pipeline and whose tasks derive from it (generate_diffusers)."""
    from .calls import RESERVED_CALL_ARGUMENTS
    from .schedulers import SCHEDULER_CLASSES
    from .signatures import checkpoint_class

    from .quantize import quantized

    source = quantized(script.source(f.model), "", getattr(f, "quantize", None))[0]
    family = families.detect(source)
    task = family.task(spec.task)
    base = checkpoint(script, f.model, source)
    # a single file: the class its config names; a hub model not here: its family's own class
    class_name = checkpoint_class(source) or script.state.get(("class", base)) or family.classes[0]
    items = getattr(f, "controlnet", None) or []
    pag = getattr(f, "pag_scale", None) is not None
    adapters = getattr(f, "adapter", None) or []
    if adapters:
        import diffusers

        cls = getattr(diffusers, family.adapter_pipeline)
    else:
        cls = derived_class(task.autopipeline, class_name, bool(items), pag)

    # the pipeline of the task, derived once per checkpoint, ControlNets and PAG layers
    nets = [controlnet(script, item.model, script.source(item.model), family.controlnet_class or "ControlNetModel")
            for item in items]
    adapter_models = [_t2i_adapter(script, item.model, script.source(item.model)) for item in adapters]
    layers = tuple(f.pag_applied_layers or ()) if pag else None
    key = ("pipeline", base, task.autopipeline, tuple(nets), layers, tuple(name for name, _ in adapter_models))
    pipe = script.model_vars.get(key)
    if pipe is None:
        if adapters:
            script.need(f"from diffusers import {cls.__name__}")
            names = [name for name, _ in adapter_models]
            adapter = names[0]
            if len(names) > 1:
                script.need("from diffusers import MultiAdapter")
                adapter = f"MultiAdapter([{', '.join(names)}])"
            pipe = script.name(f"{base}_{'_'.join(names)}")
            script.model_line(f"{pipe} = {cls.__name__}.from_pipe({base}, adapter={adapter})")
        elif task.autopipeline is None:
            pipe = base
        else:
            extra = []
            if nets:
                extra.append(f"controlnet={nets[0] if len(nets) == 1 else '[' + ', '.join(nets) + ']'}")
            if pag:
                extra.append("enable_pag=True")
                if layers:
                    extra.append(f"pag_applied_layers={script.literal(list(layers))}")
            script.need(f"from diffusers import {task.autopipeline}")
            suffix = {"text2image": "txt2img", "image2image": "img2img", "inpainting": "inpaint"}.get(spec.task, spec.task)
            pipe = script.name(f"{base}_{suffix}" + ("_" + "_".join(nets) if nets else "") + ("_pag" if pag else ""))
            script.model_line(f"{pipe} = {task.autopipeline}.from_pipe({', '.join([base] + extra)})  # {cls.__name__}")
        script.model_vars[key] = pipe

    # the scheduler: the checkpoint's own, or one by its short name built from the checkpoint's config
    current = script.state.get(("scheduler", pipe))
    own = f"{base}.scheduler"
    if pipe == base and (f.scheduler is not None or current is not None):  # the checkpoint's own pipeline: keep its own
        own = script.state.get(("own scheduler", base))
        if own is None:
            own = script.name(f"{base}_scheduler")
            script.model_line(f"{own} = {base}.scheduler  # the checkpoint's own, before any node sets another")
            script.state[("own scheduler", base)] = own
    if f.scheduler is not None:
        table = family.schedulers or SCHEDULER_CLASSES
        scheduler_class, overrides = table[f.scheduler]
        if callable(overrides):  # settings that follow the checkpoint's own schedule: read from it at run time
            overrides = overrides(_ConfigSource(f"{own}.config"))
        script.need(f"from diffusers import {scheduler_class}")
        extra = "".join(f", {name}={script.literal(value)}" for name, value in overrides.items())
        script.line(f"{pipe}.scheduler = {scheduler_class}.from_config({own}.config{extra})  # {f.scheduler}")
        script.state[("scheduler", pipe)] = f.scheduler
    elif current is not None:
        script.line(f"{pipe}.scheduler = {own}  # the checkpoint's own")
        script.state[("scheduler", pipe)] = None

    kwargs: dict[str, str] = {}
    for field, argument in spec.arguments.items():
        if getattr(f, field, None) is not None:
            kwargs[argument] = script.expr(field)
    kwargs.update(spec.export_inputs(script, f))
    start = getattr(f, "latents", None)
    if start is not None and "mask_image" in kwargs:
        if "masked_image_latents" in inspect.signature(cls.__call__).parameters:
            kwargs["masked_image_latents"] = kwargs["image"]
        kwargs["width"] = f"{kwargs['image']}.shape[-1] * {pipe}.vae_scale_factor"
        kwargs["height"] = f"{kwargs['image']}.shape[-2] * {pipe}.vae_scale_factor"
    elif (spec.size_from_image or task.size_from_input) and getattr(f, "image", None) is not None:
        image = script.ref(f.image)
        kwargs.setdefault("width", f"{image}.width")
        kwargs.setdefault("height", f"{image}.height")
    if adapters:
        _adapter_arguments(script, f, kwargs, [channels for _, channels in adapter_models])
    if items:
        _controlnet_arguments(script, spec, f, kwargs, cls)
    parameters = inspect.signature(cls.__call__).parameters
    for name, value in f.pipeline_kwargs.items():
        if name in RESERVED_CALL_ARGUMENTS or name not in parameters:
            raise script.unsupported(f"pipeline_kwargs.{name} is not an argument {cls.__name__} takes")
        if isinstance(value, list) and "tuple" in str(parameters[name].annotation).lower():
            value = tuple(value)
        kwargs[name] = script.expr("pipeline_kwargs", name, value=value)

    keep_latents = wanted_latents(script, kwargs, parameters, family.latents)

    weighted = family.weighted_prompts and script.task.prompt_syntax == "weighted"
    if "clip_skip" in kwargs and not script.state.get(("clip-skip bridge", base)):  # diffusers' or compel's
        script.helper("clip_skip_bridge", CLIP_SKIP_HELPER)
        script.line(f"clip_skip_bridge({base})")
        script.state[("clip-skip bridge", base)] = True
    with _memory_options(script, pipe, f), _loras(script, pipe, f), _freeu(script, pipe, getattr(f, "freeu", None)), \
            _runtime(script, pipe, cls, f), _ip_adapters(script, pipe, cls, f, kwargs):
        if weighted:
            kwargs = _weighted(script, pipe, f, kwargs, inversions=bool(source.entry.embeddings))
        call_lines(script, pipe, kwargs, "result")
    generation_outputs(script, kwargs, keep_latents)


def wanted_latents(script, kwargs: dict[str, str], parameters, hands_on_latents: bool) -> bool:
    """How the node's latents are had, as run_pipeline has them: no decode (output_type latent) where every reader
    takes latents and the family hands them on, else the last step's (a callback; returns True)."""
    outputs = [name for name in ("image", "images", "latents") if script.read(name)]
    latents_only = outputs == ["latents"] or script.task.only_outputs == ["latents"]
    keep_latents = "latents" in outputs and not latents_only
    if latents_only and hands_on_latents and "output_type" in parameters and "output_type" not in kwargs:
        kwargs["output_type"] = '"latent"  # every node reading this one takes its latents: no VAE decode'
    elif latents_only:
        keep_latents = True
    if keep_latents:
        script.helper("KeepLatents", LATENTS_HELPER)
        script.line("kept = KeepLatents()")
        kwargs["callback_on_step_end"] = "kept"
        kwargs["callback_on_step_end_tensor_inputs"] = '["latents"]'
    return keep_latents


def generation_outputs(script, kwargs: dict[str, str], keep_latents: bool, resize_to: str | None = None) -> None:
    """The node's image, images and latents from `result` (`resize_to`: Python source of a size the images are
    resized back to, where the family generated at another)."""
    if kwargs.get("output_type", "").startswith('"latent"'):
        script.line(f"{script.output('latents')} = result.images")
        return
    images = script.output("images")
    script.line(f"{images} = result.images")
    if resize_to is not None:
        script.line("if keep_size is not None:  # generated in the decoder's size steps: back to the input's size")
        script.line(f"    {images} = [image.resize(keep_size, Image.LANCZOS) for image in {images}]")
    first = script.output("image", "RGB")
    script.line(f"{first} = {images}[0]")
    if keep_latents:
        script.line(f"{script.output('latents')} = kept.latents")


def export_named_pipeline(script, f) -> None:
    """The `pipeline` node: the class by name, from_pipe of the checkpoint unless it is the checkpoint's own class,
    called with the node's `call` (links: the images as they are), a CPU generator where the class takes one
    (runner's run_named_pipeline)."""
    import diffusers

    from .signatures import checkpoint_class

    source = script.source(f.model)
    cls = getattr(diffusers, f.class_, None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
        raise script.unsupported(f"'{f.class_}' is not a diffusers pipeline class")
    base = checkpoint(script, f.model, source)
    key = ("pipeline-class", f.class_, base)
    pipe = script.model_vars.get(key)
    if pipe is None:
        if checkpoint_class(source) == f.class_:
            pipe = base
        else:
            script.need(f"from diffusers import {f.class_}")
            pipe = script.name(f"{base}_{script.node_id}")
            script.model_line(f"{pipe} = {f.class_}.from_pipe({base})")
        script.model_vars[key] = pipe
    parameters = inspect.signature(cls.__call__).parameters
    script.line(f"result = {pipe}(")
    for name, value in f.call.items():
        if isinstance(value, list) and value and all(hasattr(item, "node") for item in value):
            written = "[" + ", ".join(script.ref(item) for item in value) + "]"
        elif hasattr(value, "node"):
            written = script.ref(value)
        else:
            parameter = parameters.get(name)
            if isinstance(value, list) and parameter is not None and "tuple" in str(parameter.annotation).lower():
                value = tuple(value)
            written = script.expr("call", name, value=value)
        script.line(f"    {name}={written},")
    if "generator" in parameters:
        script.line(f'    generator=torch.Generator("cpu").manual_seed({script.seed}),  # {script.seed_comment()}')
    script.line(")")
    images = script.output("images")
    script.line(f"{images} = result.images")
    script.line(f"{script.output('image')} = {images}[0]")


def export_upscaler(script, f, image: str) -> str:
    """A diffusion upscaler's call on `image` (Python source of an RGB image); returns the variable of its first
    image (runner's diffusion_upscale)."""
    import diffusers

    from .signatures import checkpoint_class

    source = script.source(f.model)
    class_name = checkpoint_class(source)
    cls = getattr(diffusers, class_name or "", None)
    if cls is None:
        raise script.unsupported(f"the pipeline class of '{source.label}' is known only once it is loaded")
    parameters = inspect.signature(cls.__call__).parameters
    if "image" not in parameters:
        raise script.unsupported(f"model '{source.label}' ({class_name}) is not an image upscaler")
    pipe = checkpoint(script, f.model, source)
    kwargs = {"image": image}
    if "prompt" in parameters:
        kwargs["prompt"] = script.expr("prompt")
    if f.steps is not None:
        kwargs["num_inference_steps"] = script.expr("steps")
    if f.noise_level is not None:
        kwargs["noise_level"] = script.expr("noise_level")
    call_lines(script, pipe, kwargs, "result")
    return "result.images[0]"


POSE_FUNCTIONS = ("openpose_keypoints", "draw_openpose", "count_drawn", "person_label", "detect_people", "_size",
                  "_center_and_scale", "_crop", "_decode", "estimate_poses", "pose_image")
POSE_CONSTANTS = ("OPENPOSE_FROM_COCO", "NECK", "COCO_SHOULDERS", "OPENPOSE_LIMBS", "OPENPOSE_COLORS",
                  "LIMB_BRIGHTNESS", "STICK_WIDTH", "JOINT_RADIUS", "_PADDING")


def transformers_model(script, ref: str, source, model_class: str) -> str:
    """The variable of (a transformers vision model, its image processor), loaded once at the top (runner's
    pose._transformers_model)."""
    key = ("transformers-model", model_class, *source_key(source))
    if key in script.model_vars:
        return script.model_vars[key]
    location, kwargs, comment = pretrained_call(script, source, model_class)
    processor_kwargs = [k for k in kwargs if k.split("=")[0] in ("revision", "subfolder", "trust_remote_code")]
    model, processor = script.name(_model_name(script, ref)), script.name(_model_name(script, ref) + "_processor")
    script.need(f"from transformers import AutoImageProcessor, {model_class}")
    script.model_line(f"{model} = {model_class}.from_pretrained({', '.join([location, *kwargs])}){comment}")
    script.model_line(f"{model}.to(device).eval()")
    script.model_line(f"{processor} = AutoImageProcessor.from_pretrained({', '.join([location, *processor_kwargs])})")
    script.model_vars[key] = f"({model}, {processor})"
    return script.model_vars[key]


def export_detect_pose(script, f) -> None:
    """detect_pose: person boxes, VitPose keypoints and the OpenPose drawing, through runner's own code for them
    (runner.models.pose, copied into the script: VitPose's crop and decoding without scipy, the drawing as
    controlnet_aux draws it)."""
    from . import pose

    script.need("import math")
    script.need("import numpy as np")
    script.need("from typing import Any, Sequence")
    lines = ["# runner's pose code (runner.models.pose), copied: person boxes, VitPose keypoints, the OpenPose drawing",
             "Keypoint = tuple[float, float, float]  # x, y (pixels), score"]
    lines += [f"{name} = {getattr(pose, name)!r}" for name in POSE_CONSTANTS]
    for name in POSE_FUNCTIONS:
        lines += ["", "", inspect.getsource(getattr(pose, name)).rstrip()]
    script.helper("pose_image", "\n".join(lines))
    estimator = transformers_model(script, f.model, script.source(f.model), "VitPoseForPoseEstimation")
    detector = (transformers_model(script, f.detector, script.source(f.detector), "AutoModelForObjectDetection")
                if f.detector is not None else "None")
    image = script.image(f.image, "RGB")
    variable = script.output("image", "RGB")
    script.line(f"{variable}, _found = pose_image({image}, {estimator}, {detector}, {script.expr('min_score')})")


def _t2i_adapter(script, ref: str, source) -> tuple[str, int]:
    """(the variable of a T2I-Adapter, loaded once at the top, its input channels)."""
    import json

    key = ("t2i-adapter", *source_key(source))
    folder = script.registry.files_folder(source, ["config.json"])
    channels = json.loads((folder / "config.json").read_text()).get("in_channels", 3)
    if key not in script.model_vars:
        variable = script.name(_model_name(script, ref))
        from_pretrained(script, variable, "T2IAdapter", source, "T2I-Adapter")
        script.model_vars[key] = variable
    return script.model_vars[key], channels


def _adapter_arguments(script, f, kwargs: dict[str, str], channels: list[int]) -> None:
    """The adapters' condition images (grey or colour, as each takes them), scales where set, the factor."""
    images = [script.image(item.image, "L" if count == 1 else "RGB") for item, count in zip(f.adapter, channels)]
    single = len(images) == 1
    kwargs["image"] = images[0] if single else "[" + ", ".join(images) + "]"
    if any(item.scale is not None for item in f.adapter) or not single:
        # one scale each: a MultiAdapter cannot read the pipelines' default single 1.0
        scales = [script.expr("adapter", index, "scale") if item.scale is not None else "1.0"
                  for index, item in enumerate(f.adapter)]
        kwargs["adapter_conditioning_scale"] = scales[0] if single else "[" + ", ".join(scales) + "]"
    if f.adapter_conditioning_factor is not None:
        kwargs["adapter_conditioning_factor"] = script.expr("adapter_conditioning_factor")


def _controlnet_arguments(script, spec, f, kwargs: dict[str, str], cls) -> None:
    conditions = []
    for index, item in enumerate(f.controlnet):
        if item.image is not None:
            conditions.append(script.image(item.image, "RGB"))
        else:
            from .generate import inpaint_condition

            conditions.append(f"{script.function(inpaint_condition)}({kwargs['image']}, {kwargs['mask_image']})")
    single = len(conditions) == 1
    parameters = inspect.signature(cls.__call__).parameters
    condition = spec.controlnet_condition if spec.controlnet_condition in parameters else "control_image"
    kwargs[condition] = conditions[0] if single else "[" + ", ".join(conditions) + "]"
    for field, argument in spec.controlnet_arguments.items():
        if all(getattr(item, field) is None for item in f.controlnet):
            continue  # not sent: the pipeline's own default
        values = []
        for index, item in enumerate(f.controlnet):
            value = getattr(item, field)
            if value is None:
                default = parameters[argument].default
                value = default[index] if isinstance(default, (list, tuple)) else default
            values.append(script.expr("controlnet", index, field, value=value))
        kwargs[argument] = values[0] if single else "[" + ", ".join(values) + "]"


class _memory_options:
    """attention_slicing / vae_tiling / offload around the call, switched off after it (runner's memory_options)."""

    def __init__(self, script, pipe: str, f):
        self.script, self.pipe, self.f = script, pipe, f
        self.offload = f.offload or script.workflow.offload

    def __enter__(self):
        script, pipe = self.script, self.pipe
        if self.f.attention_slicing:
            script.line(f"{pipe}.enable_attention_slicing()")
        if self.f.vae_tiling:
            script.line(f"{pipe}.vae.enable_tiling()")
        if self.offload == "group":
            script.line('if device.startswith("cuda"):  # offload: group (runner ignores it elsewhere)')
            script.line(f'    {pipe}.enable_group_offload(onload_device=torch.device(device), '
                        'offload_device=torch.device("cpu"), offload_type="leaf_level", use_stream=True)')
        elif self.offload != "none":
            method = "enable_model_cpu_offload" if self.offload == "model" else "enable_sequential_cpu_offload"
            script.line(f'if device.startswith("cuda"):  # offload: {self.offload} (runner ignores it elsewhere)')
            script.line(f'    {pipe}.{method}(gpu_id=int(device.split(":")[1]) if ":" in device else 0)')
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        script, pipe = self.script, self.pipe
        if self.f.attention_slicing:
            script.line(f"{pipe}.disable_attention_slicing()")
        if self.f.vae_tiling:
            script.line(f"{pipe}.vae.disable_tiling()")
        if self.offload != "none":
            script.line('if device.startswith("cuda"):')
            if self.offload == "group":  # diffusers has no public call that removes group offloading's hooks
                script.need("from diffusers.hooks import HookRegistry")
                script.line(f"    for component in {pipe}.components.values():")
                script.line("        if isinstance(component, torch.nn.Module):")
                script.line('            for name in ("group_offloading", "layer_execution_tracker", '
                            '"lazy_prefetch_group_offloading"):')
                script.line("                HookRegistry.check_if_exists_or_initialize(component).remove_hook(name)")
            script.line(f"    {pipe}.remove_all_hooks()")
            script.line(f"    {pipe}.to(device)")
        return False


def _weighted(script, pipe: str, f, kwargs: dict[str, str], inversions: bool) -> dict[str, str]:
    """prompt_syntax: weighted: the prompts become (text, weight) fragments, read as runner reads A1111's syntax and
    written out as data, encoded by compel in the script (runner's weighted_arguments), passed as embeddings."""
    from .prompt_weights import fragments

    script.need("from compel import Compel, ReturnedEmbeddingsType")
    script.need("from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment")
    script.helper("weighted_prompt_embeds", WEIGHTED_HELPER)
    if inversions:
        script.need("from compel import BaseTextualInversionManager")
        script.helper("InversionManager", INVERSIONS_HELPER)
    texts = {"prompt": getattr(f, "prompt", None), "negative_prompt": getattr(f, "negative_prompt", None),
             "prompt_2": f.pipeline_kwargs.get("prompt_2"), "negative_prompt_2": f.pipeline_kwargs.get("negative_prompt_2")}
    kwargs = {name: value for name, value in kwargs.items()
              if name not in ("prompt", "negative_prompt", "prompt_2", "negative_prompt_2", "clip_skip")}
    script.line("# prompt_syntax: weighted: each prompt as (text, weight) fragments, as runner reads A1111's syntax")
    arguments = []
    for name, text in texts.items():
        if name == "prompt" or text is not None:
            value = script.literal([tuple(item) for item in fragments(text or "")]) if text is not None else "None"
            script.line(f"{name} = {value}")
            arguments.append(f"{name}={name}")
    if getattr(f, "clip_skip", None):
        arguments.append(f"clip_skip={script.expr('clip_skip')}")
    if inversions:
        arguments.append("inversions=InversionManager")
    script.line(f"embeds = weighted_prompt_embeds({pipe}, {', '.join(arguments)})")
    return {**kwargs, "**embeds": ""}


def _hub_subfolder(folder: Path) -> tuple[Path, str]:
    """(the snapshot's root, the folder relative to it) for a folder inside a hub cache snapshot."""
    parts = folder.parts
    index = len(parts) - 1 - parts[::-1].index("snapshots")
    return Path(*parts[:index + 2]), Path(*parts[index + 2:]).as_posix() if len(parts) > index + 2 else ""


def image_encoder(script, ref: str, source) -> str:
    """The variable of an IP-Adapter's CLIP image encoder (loaded once, at the top)."""
    from .ip_adapters import encoder_folder

    key = ("image-encoder", *source_key(source))
    if key in script.model_vars:
        return script.model_vars[key]
    folder = encoder_folder(script.registry, source)
    if source.kind == "hub":
        _root, subfolder = _hub_subfolder(folder)
        arguments = [script.literal(source.location)] + ([f"subfolder={script.literal(subfolder)}"] if subfolder else [])
        if source.entry.revision:
            arguments.append(f"revision={script.literal(source.entry.revision)}")
    else:
        arguments = [script.literal(str(folder.resolve()))]
    variable = script.name("image_encoder")
    script.need("from transformers import CLIPVisionModelWithProjection")
    script.model_line(f"{variable} = CLIPVisionModelWithProjection.from_pretrained("
                      f"{', '.join(arguments + ['torch_dtype=dtype', 'use_safetensors=True'])})")
    script.model_line(f"{variable}.to(device)")
    script.model_vars[key] = variable
    return variable


class _ip_adapters:
    """IP-Adapters loaded for the call, as diffusers' docs load them, and unloaded after it (runner's
    applied_ip_adapters): the encoder registered on the pipeline, load_ip_adapter, set_ip_adapter_scale, the images
    as ip_adapter_image (runner passes the same images' embeddings, which diffusers makes the same way), masks
    through IPAdapterMaskProcessor."""

    def __init__(self, script, pipe: str, cls, f, kwargs: dict[str, str]):
        self.script, self.pipe, self.cls, self.kwargs = script, pipe, cls, kwargs
        self.items = list(getattr(f, "ip_adapter", None) or [])

    def __enter__(self):
        if not self.items:
            return self
        script, pipe = self.script, self.pipe
        encoders = {}
        folders, names = [], []
        for item in self.items:
            source = script.source(item.model)
            encoder_ref = item.image_encoder or item.model
            encoders[image_encoder(script, encoder_ref, script.source(encoder_ref))] = True
            path = script.registry.weights_file(source, "IP-Adapter")
            if source.kind == "hub":
                root, subfolder = _hub_subfolder(path.parent)
                folders.append((script.literal(source.location), script.literal(subfolder)))
            else:
                folders.append((script.literal(str(path.parent.resolve())), '""'))
            names.append(script.literal(path.name))
        if len(encoders) > 1:
            raise script.unsupported("its IP-Adapters use different image encoders")
        encoder = next(iter(encoders))
        one = len(self.items) == 1

        def listed(values: list[str]) -> str:
            return values[0] if one else "[" + ", ".join(values) + "]"

        takes = inspect.signature(self.cls.load_ip_adapter).parameters
        no_encoder = [f"{name}=None" for name in ("image_encoder_folder", "image_encoder_pretrained_model_name_or_path")
                      if name in takes]
        script.line(f"{pipe}.register_modules(image_encoder={encoder})")
        arguments = [listed([folder for folder, _ in folders]), f"subfolder={listed([sub for _, sub in folders])}",
                     f"weight_name={listed(names)}", *no_encoder]
        script.line(f"{pipe}.load_ip_adapter({', '.join(arguments)})")
        scales = [script.expr("ip_adapter", index, "scale") if item.scale is not None else "1.0"
                  for index, item in enumerate(self.items)]
        script.line(f"{pipe}.set_ip_adapter_scale({listed(scales)})")
        images = []
        for item in self.items:
            if isinstance(item.image, list):
                images.append("[" + ", ".join(script.image(link, "RGB") for link in item.image) + "]")
            else:
                images.append(script.image(item.image, "RGB"))
        self.kwargs["ip_adapter_image"] = images[0] if one else "[" + ", ".join(images) + "]"
        if any(item.mask is not None for item in self.items):
            self._masks()
        return self

    def _masks(self) -> None:
        script, kwargs = self.script, self.kwargs
        script.need("from diffusers.image_processor import IPAdapterMaskProcessor")
        script.need("from PIL import Image")
        if "width" in kwargs and "height" in kwargs:
            width, height = kwargs["width"], kwargs["height"]
        elif "image" in kwargs and not kwargs["image"].endswith(")"):
            width, height = f"{kwargs['image']}.width", f"{kwargs['image']}.height"
        else:
            width = height = f"{self.pipe}.unet.config.sample_size * {self.pipe}.vae_scale_factor"
        script.line(f"width, height = {width}, {height}")
        script.line("masks = []  # one [1, images, H, W] tensor per IP-Adapter, as diffusers' docs build them")
        for item in self.items:
            count = len(item.image) if isinstance(item.image, list) else 1
            mask = script.image(item.mask, "L") if item.mask is not None else 'Image.new("L", (width, height), 255)'
            script.line(f"mask = IPAdapterMaskProcessor().preprocess([{mask}] * {count}, height=height, width=width)")
            script.line("masks.append(mask.reshape(1, mask.shape[0], mask.shape[2], mask.shape[3]))")
        extra = kwargs.get("cross_attention_kwargs")
        kwargs["cross_attention_kwargs"] = ('{**' + extra + ', "ip_adapter_masks": masks}') if extra else \
            '{"ip_adapter_masks": masks}'

    def __exit__(self, *exc):
        if self.items and exc[0] is None:
            self.script.line(f"{self.pipe}.unload_ip_adapter()")
        return False


class _runtime:
    """The node's run-time options for the call, undone after it (runner's runtime_options), as diffusers' docs set
    them: the VAE's slicing, channels-last memory format, the denoiser's attention backend, a step cache."""

    def __init__(self, script, pipe: str, cls, f):
        from ..core.runtime import RUNTIME_OPTIONS

        self.script, self.pipe = script, pipe
        self.options = {name: getattr(f, name, None) for name in RUNTIME_OPTIONS}
        takes = inspect.signature(cls.__init__).parameters
        self.denoiser = f"{pipe}.unet" if "unet" in takes else f"{pipe}.transformer"
        self.vae = f"{pipe}.vae" if "vae" in takes else None
        self.undo: list[str] = []

    def __enter__(self):
        script, options = self.script, self.options
        if options["vae_slicing"]:
            script.line(f"{self.vae}.enable_slicing()  # vae_slicing")
            self.undo.append(f"{self.vae}.disable_slicing()")
        if options["channels_last"]:
            modules = [self.denoiser] + ([self.vae] if self.vae else [])
            for module in modules:
                script.line(f"{module}.to(memory_format=torch.channels_last)  # channels_last")
            self.undo.append("\n".join(f"{module}.to(memory_format=torch.contiguous_format)" for module in modules))
        if options["attention"]:
            script.line(f"{self.denoiser}.set_attention_backend({script.literal(options['attention'])})")
            self.undo.append(f"{self.denoiser}.reset_attention_backend()")
        if options["compile"]:
            settings = options["compile"].settings() if hasattr(options["compile"], "settings") else {}
            text = ", ".join(f"{name}={script.literal(value)}" for name, value in settings.items())
            script.line(f"{self.denoiser}.compile({text})  # compile: torch.compile of the denoiser, in place")
            # runner compiles a module once per Session and uncompiles it after the node (nn.Module.compile keeps the
            # compiled call there)
            self.undo.append(f"{self.denoiser}._compiled_call_impl = None")
        if options["step_cache"]:
            from ..core.runtime import STEP_CACHES

            cache = options["step_cache"]
            config = STEP_CACHES[cache.type]
            script.need(f"from diffusers import {config}")
            settings = ", ".join(f"{name}={script.expr('step_cache', name, value=value)}"
                                 for name, value in cache.settings().items())
            script.line(f"{self.denoiser}.enable_cache({config}({settings}))  # step_cache: {cache.type}")
            self.undo.append(f"{self.denoiser}.disable_cache()")
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            for text in reversed(self.undo):
                self.script.line(text)
        return False


class _freeu:
    """FreeU on the pipeline's UNet for the call, off again after it (runner's freeu)."""

    def __init__(self, script, pipe: str, values):
        self.script, self.pipe, self.values = script, pipe, values

    def __enter__(self):
        if self.values is not None:
            factors = ", ".join(f"{name}={self.script.expr('freeu', name)}" for name in ("s1", "s2", "b1", "b2"))
            self.script.line(f"{self.pipe}.enable_freeu({factors})")
        return self

    def __exit__(self, *exc):
        if self.values is not None and exc[0] is None:
            self.script.line(f"{self.pipe}.disable_freeu()")
        return False


class _loras:
    """The node's LoRAs loaded for the call and unloaded after it (runner's applied_loras)."""

    def __init__(self, script, pipe: str, f):
        self.script, self.pipe, self.loras = script, pipe, list(getattr(f, "lora", []) or [])

    def __enter__(self):
        script = self.script
        names, weights = [], []
        for index, item in enumerate(self.loras):
            source = script.source(item.model)
            path, kwargs, _comment = pretrained_call(script, source, "LoRA")
            allowed = [k for k in kwargs if k.split("=")[0] in ("revision", "subfolder", "use_safetensors")]
            if source.kind == "file":
                file = Path(source.location)
                path, allowed = script.literal(str(file.parent)), allowed + [f"weight_name={script.literal(file.name)}"]
            name = f"lora_{index}"
            arguments = ", ".join([path, "adapter_name=" + script.literal(name), *allowed])
            script.line(f"{self.pipe}.load_lora_weights({arguments})")
            names.append(name)
            weights.append(script.expr("lora", index, "scale"))
        if names:
            script.line(f"{self.pipe}.set_adapters({script.literal(names)}, adapter_weights=[{', '.join(weights)}])")
        return self

    def __exit__(self, *exc):
        if self.loras and exc[0] is None:
            self.script.line(f"{self.pipe}.unload_lora_weights()")
        return False
