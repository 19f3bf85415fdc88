"""What nodes load models through: one run's view of the model pool, on one device and dtype.

A checkpoint is loaded once as a base pipeline; the txt2img / img2img /
inpaint variants are derived from it with diffusers' AutoPipeline `from_pipe`,
which reuses the same module objects (no second copy of the weights).
Everything loaded stays in the Session's pool (runner.models.pool) for later
runs, within its memory budget; this view records what the run loaded,
reused from earlier runs and released.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from .library_output import quiet_libraries
from .pool import ModelPool, estimate_bytes, format_size
from .sources import (
    ModelSource,
    ModelUnavailable,
    config_source,
    default_config_source,
    has_safetensors,
    local_folder,
    missing_safetensors_explained,
    pickle_weights,
    prepare_hub,
    refuse_pickle,
)

OWN_SCHEDULER = "_runner_own_scheduler"  # the attribute keeping a loaded checkpoint's own scheduler


def model_folder(source: ModelSource, models_dir: Path) -> Path | None:
    """The model's files on disk (tiny: built on demand; hub: the cached snapshot), or None if not local."""
    if source.kind == "tiny":
        from .tiny import ensure_tiny

        return ensure_tiny(source.location, models_dir / "tiny")
    return local_folder(source, models_dir)


class ModelRegistry:
    def __init__(self, pool: ModelPool, device: str, dtype: str, deterministic: bool = False, run: int = 0):
        quiet_libraries()
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it before CUDA starts
        import torch

        self.torch = torch
        # process-wide settings: a Session's later runs set them again, either way
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.deterministic = deterministic
        if deterministic:
            torch.backends.cudnn.benchmark = False
        self.pool = pool
        self.device = self._usable_device(device)
        self.dtype_name = dtype
        self.dtype = getattr(torch, dtype)
        self.models_dir = pool.models_dir
        self.hash_cache = pool.hash_cache
        self.shared_components = pool.shared_components
        self.run = run
        self.loads: list[str] = []  # identities loaded from disk by this run, in order (for manifests and tests)
        self.reused: list[str] = []  # identities this run took from the pool, loaded by an earlier run
        self.released: list[dict] = []  # residents released to stay within the memory budget
        self.in_use: set[tuple[str, str, str]] = set()  # residents the running node uses: never released
        self.phase: Callable[[str], None] = lambda text: None  # tells the running node's progress what takes time

    def environment(self) -> dict[str, Any]:
        """What the manifest records about the device and the determinism settings in force."""
        torch = self.torch
        info: dict[str, Any] = {
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "generator_device": "cpu",
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        }
        if self.device.startswith("cuda"):
            info["device_name"] = torch.cuda.get_device_name(torch.device(self.device))
        return info

    def _usable_device(self, device: str) -> str:
        torch = self.torch
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelUnavailable(f"device '{device}' was requested but torch sees no CUDA device; use device: cpu or auto")
        if device == "mps" and not torch.backends.mps.is_available():
            raise ModelUnavailable("device 'mps' was requested but is not available; use device: cpu or auto")
        return device

    # ------------------------------------------------------------- loading
    def node_started(self, phase: Callable[[str], None] | None = None) -> None:
        self.in_use = set()
        if phase is not None:
            self.phase = phase

    def _resident_key(self, identity: str) -> tuple[str, str, str]:
        return (self.device, self.dtype_name, identity)

    def _pool_key(self, key: tuple) -> tuple:
        """Objects in the pool are kept per device and dtype: the same checkpoint in float16 on CUDA is another one."""
        return (self.device, self.dtype_name) + key

    def cached(self, key: tuple, factory: Callable[[], Any], *, load_label: str | None = None,
               group: str | tuple[str, ...] = (), estimate: Callable[[], int | None] | None = None,
               source: ModelSource | None = None) -> Any:
        """The object stored under `key` in the pool, made by `factory()` the first time.

        `load_label` marks a model load from disk: a new resident named by `group` (its identity), sized
        after loading and made room for before it (`estimate()` bytes); the node's progress says what loads
        (`source`: its name and where its files are). Derived objects name the residents they are made of in
        `group`, and go when any of those is released.
        """
        groups = tuple(self._resident_key(g) for g in ((group,) if isinstance(group, str) else group))
        full_key = self._pool_key(key)
        pool = self.pool
        self.in_use.update(g for g in groups if g in pool.residents)
        found = pool.objects.get(full_key)
        if found is not None:
            for resident_key in groups:
                resident = pool.residents.get(resident_key)
                if resident is not None:
                    resident.last_used = time.monotonic()
                    if load_label is not None and resident.run != self.run and resident.identity not in self.reused:
                        self.reused.append(resident.identity)
            return found[0]
        if load_label is not None and groups:
            memory = "vram" if self.device.startswith("cuda") else "ram"
            needed = estimate() if estimate is not None else None
            pool.make_room(memory, needed or 0, self.in_use, self.released, load_label)
            self.phase(self._loading_text(source, load_label, needed))
        value = factory()
        if load_label is not None and groups:
            resident = pool.admit(groups[0], value, load_label, self.run)
            self.in_use.add(groups[0])
            self.loads.append(load_label)
            # a model whose size was not known before loading: release others now if it went over the budget
            pool.make_room(resident.memory, 0, self.in_use, self.released, load_label)
        pool.objects[full_key] = (value, groups)
        return value

    def _loading_text(self, source: ModelSource | None, label: str, needed: int | None) -> str:
        """'loading NAME (about SIZE in DTYPE, onto DEVICE) from WHERE': the phase a model load shows."""
        size = f"about {format_size(needed)} in {self.dtype_name}" if needed else "size not known before loading"
        text = f"loading {source.label if source is not None else label} ({size}, onto {self.device})"
        if source is None:
            return text
        if source.kind == "hub":
            folder = local_folder(source, self.models_dir)
            return text + (f" from the Hugging Face cache {folder}" if folder is not None
                           else " from the Hugging Face hub (downloading)")
        folder = self.model_folder(source).resolve() if source.kind == "tiny" else source.location
        return text + f" from {folder}"

    def estimate(self, source: ModelSource) -> Callable[[], int | None]:
        """Bytes the source's weights will take in this run's dtype, read from its files before loading."""
        return lambda: estimate_bytes(self.model_folder(source), self.dtype_name, source.entry.variant)

    def model_folder(self, source: ModelSource) -> Path | None:
        """The model's files on disk (tiny: built on demand; hub: the cached snapshot), or None if not local."""
        if source.kind == "tiny" and local_folder(source, self.models_dir) is None:
            self.phase(f"building {source.label} (first use of this tiny model; kept in "
                       f"{(self.models_dir / 'tiny').resolve()} for later runs)")
        return model_folder(source, self.models_dir)

    def files_folder(self, source: ModelSource, patterns: list[str]) -> Path:
        """The folder holding a model's files, its entry's subfolder applied: a file's own folder, a local or tiny
        model's folder, or the hub snapshot of the files matching `patterns` (relative to the subfolder; offline:
        the cached ones)."""
        subfolder = source.entry.subfolder
        if source.kind == "hub":
            from huggingface_hub import snapshot_download

            location, kwargs = self.pretrained_args(source)
            hub = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only") if k in kwargs}
            folder = Path(snapshot_download(location, allow_patterns=[f"{subfolder}/{p}" if subfolder else p
                                                                      for p in patterns], **hub))
        elif source.kind == "file":
            return Path(source.location).parent
        else:
            folder = self.model_folder(source)
        return folder / subfolder if subfolder else folder

    def weights_file(self, source: ModelSource, what: str, preferred: str | None = None) -> Path:
        """The one .safetensors file an adapter-like model (an embedding, an IP-Adapter) is: the file itself; in its
        folder or hub repository the entry's weight_name, else `preferred` (diffusers' default name), else the only
        .safetensors file there (ModelUnavailable when there are several or none)."""
        if source.kind == "file":
            return Path(source.location)
        name = source.entry.weight_name
        folder = self.files_folder(source, [name or "*.safetensors"])
        if name:
            if not (folder / name).is_file():
                raise ModelUnavailable(f"{what} '{source.label}' has no {name} in {folder}",
                                       "fix weight_name (and subfolder) on its model entry")
            return folder / name
        if preferred and (folder / preferred).is_file():
            return folder / preferred
        files = sorted(folder.glob("*.safetensors"))
        if len(files) != 1:
            raise ModelUnavailable(f"{what} '{source.label}' holds {len(files) or 'no'} .safetensors files in {folder}"
                                   + (f" (none is {preferred})" if preferred else ""),
                                   "name the file with weight_name: on its model entry (and subfolder: where it lies), "
                                   "or name the .safetensors file itself")
        return files[0]

    def pretrained_args(self, source: ModelSource) -> tuple[str, dict]:
        """(what to pass to from_pretrained, its keyword arguments) for this source, dtype and safety settings.

        Without allow_pickle: true on the entry, the loaders are asked for safetensors only, and a model whose files
        here hold pickle weights without safetensors beside them is refused first (PickleRefused: the file and the
        fix). With it, the libraries' own choice (safetensors where there are, pickle otherwise), or straight to
        pickle for a model that has no safetensors here (diffusers would log an error for each component first)."""
        entry = source.entry
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        folder = self.model_folder(source)
        if not entry.allow_pickle:
            kwargs["use_safetensors"] = True
        elif folder is not None and folder.exists():
            weights = folder / entry.subfolder if entry.subfolder else folder
            if pickle_weights(weights) and not has_safetensors(weights):
                kwargs["use_safetensors"] = False
        if entry.variant:
            kwargs["variant"] = entry.variant
        if entry.subfolder:
            kwargs["subfolder"] = entry.subfolder
        if entry.trust_remote_code:
            kwargs["trust_remote_code"] = True
        refuse_pickle(source, folder)
        if source.kind == "tiny":
            return str(folder), kwargs
        if source.kind == "hub":
            kwargs.update(prepare_hub(source))
        return source.location, kwargs

    def base(self, source: ModelSource, identity: str):
        """The checkpoint's own pipeline, loaded once. Components byte-identical to ones already loaded
        (an SDXL refiner's VAE and second text encoder) are passed in instead of loaded again."""
        def load():
            from diffusers import DiffusionPipeline

            from .parts import part_overrides

            location, kwargs = self.pretrained_args(source)
            # a swapped VAE or text encoder, diffusers' documented way: Pipeline.from_pretrained(..., vae=vae)
            kwargs.update(part_overrides(self, source))
            quantized = self._quantization(source, kwargs)
            if source.kind == "file":
                pipe = self.from_single_file(location, kwargs, source)
            else:
                folder = self.model_folder(source)
                # a checkpoint with embeddings changes its text encoders and tokenizers: they are its own; quantized
                # components are too
                shared = {k: v for k, v in self._identical_components(folder).items() if k not in kwargs
                          and k not in quantized
                          and not (source.entry.embeddings and k.startswith(("text_encoder", "tokenizer")))}
                with missing_safetensors_explained(source):
                    pipe = DiffusionPipeline.from_pretrained(location, **kwargs, **shared)
                self.shared_components[identity] = sorted(shared)
                if not source.entry.embeddings:
                    self._remember_components(folder, pipe, skip=set(quantized))
            from .compat import bridge
            from .embeddings import load_embeddings

            bridge(pipe)
            load_embeddings(self, pipe, source)
            pipe.to(self.device)
            pipe.set_progress_bar_config(disable=True)
            # the checkpoint's own scheduler, kept: a task that runs on the checkpoint's own pipeline (depth2img) sets
            # a node's scheduler on it, and later nodes still start from this one
            object.__setattr__(pipe, OWN_SCHEDULER, getattr(pipe, "scheduler", None))
            return pipe

        return self.cached(("base", identity), load, load_label=identity, group=identity, estimate=self.estimate(source),
                           source=source)

    def _quantization(self, source: ModelSource, kwargs: dict) -> dict[str, str]:
        """A quantized checkpoint (source.quantize): diffusers' quantization_config joins `kwargs`; returns the
        components it quantizes."""
        if not source.quantize:
            return {}
        if source.kind == "file":
            raise ModelUnavailable(f"quantize: model '{source.label}' is a single file, which runner does not load "
                                   "quantized in this version", "remove quantize, or use the model as a diffusers folder "
                                   "or hub id")
        from .quantize import components, pipeline_config

        mapping = components(source, self.model_folder(source))
        kwargs["quantization_config"] = pipeline_config(mapping, self.dtype)
        return mapping

    def _component_digests(self, folder: Path | None) -> dict[str, str]:
        """Component subfolder -> digest of its files, for folders holding weights."""
        if folder is None or self.hash_cache is None or not (folder / "model_index.json").is_file():
            return {}
        digests = {}
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            if any(sub.glob("*.safetensors")) or any(sub.glob("*.bin")):
                digests[sub.name] = self.hash_cache.tree_digest(sub)
        return digests

    def _identical_components(self, folder: Path | None) -> dict[str, Any]:
        known = self.pool.components_by_digest
        return {name: known[(self.device, self.dtype_name, digest)] for name, digest in self._component_digests(folder).items()
                if (self.device, self.dtype_name, digest) in known}

    def _remember_components(self, folder: Path | None, pipe, skip: set = frozenset()) -> None:
        for name, digest in self._component_digests(folder).items():
            module = getattr(pipe, name, None)
            if module is not None and name not in skip:
                self.pool.components_by_digest.setdefault((self.device, self.dtype_name, digest), module)

    def from_single_file(self, location: str, kwargs: dict, source: ModelSource, cls=None):
        """A single-file checkpoint's pipeline, with the diffusers config its entry names or the one runner ships (a
        transformer family's: the config files of diffusers' repository for it); `kwargs` may carry loaded parts."""
        from ..core.model_entry import PARTS
        from . import families
        from .single_file import file_keys, load_pipeline

        parts = {name: kwargs[name] for name in PARTS if name in kwargs}
        family = families.from_files(source)
        if family is not None and family.single_file_config is not None and cls is None:
            from .parts import load_transformer_checkpoint

            keys = file_keys(Path(location)) or []
            overrides = family.single_file_overrides(keys) if family.single_file_overrides else {}
            return load_transformer_checkpoint(self, source, self.single_file_config(source), parts, overrides,
                                               family.single_file_parts)
        return load_pipeline(location, source.label, self.single_file_config(source), self.models_dir, kwargs["dtype"], cls,
                             parts=parts)

    def single_file_config(self, source: ModelSource) -> Path | None:
        """The local folder of the entry's `config:` (a tiny one built, a hub one from the local cache or, where the
        hub can be reached, its config files downloaded), else of a transformer family's default (the config files
        of diffusers' repository for the file's architecture); None: the one runner ships (SD, SDXL)."""
        config = config_source(source)
        if config is None:
            config = default_config_source(source)
            if config is None:
                return None
        if config.kind != "hub":
            return self.model_folder(config)
        try:
            hub = prepare_hub(config)  # not cached and the hub out of reach: says so, with the download command
        except ModelUnavailable as exc:
            if source.entry.config:
                raise
            raise ModelUnavailable(
                f"model '{source.label}' is a single file, which runner reads with the config files of {config.location} "
                f"(diffusers' repository for its architecture), and {exc}",
                f"download them once: hf download {config.location} --include '*.json' '*.txt' '*.model' (a gated "
                "repository needs `hf auth login` first), or name a local diffusers folder of the same model as config: "
                "on the model entry") from None
        folder = local_folder(config, self.models_dir)
        if folder is not None:
            return folder
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(config.location, cache_dir=hub["cache_dir"],
                                      allow_patterns=["*.json", "*.txt", "*.model"]))

    def vae_override(self, source: ModelSource):
        """The AutoencoderKL a model entry's `vae:` names (runner.models.parts)."""
        from .parts import load_part, own_config

        return load_part(self, source, "vae", own_config(self, source))

    def family(self, source: ModelSource, identity: str):
        """The checkpoint's model family: from its files when they say (nothing loads), else from the class of its
        pipeline, loaded once (a single file, a hub model not in the local cache)."""
        from . import families

        found = families.detect(source)
        return found if found is not None else families.of_pipeline(self.base(source, identity))

    def controlnet(self, source: ModelSource, identity: str, class_name: str = "ControlNetModel"):
        """A ControlNet model (of the family's ControlNet class), loaded once and shared by every node and pipeline
        that uses it."""

        def load():
            import diffusers

            location, kwargs = self.pretrained_args(source)
            with missing_safetensors_explained(source):
                return getattr(diffusers, class_name).from_pretrained(location, **kwargs).to(self.device)

        return self.cached(("controlnet", identity), load, load_label=identity, group=identity, estimate=self.estimate(source),
                           source=source)

    def pipeline(self, autopipeline: str | None, source: ModelSource, identity: str, controlnets: list = (), *,
                 channels: tuple[int, ...] = (), used_by: str = "this node", controlnet_class: str | None = None,
                 task: str = "", pag_layers: tuple[str, ...] | None = None):
        """The pipeline `autopipeline.from_pipe` derives from this checkpoint (None: the checkpoint's own), with these
        ControlNets (of `controlnet_class`, the family's), sharing the base's modules; a denoiser taking other input
        `channels` than these is refused. `pag_layers`: the Perturbed-Attention Guidance pipeline of the task
        (`enable_pag=True`), on these layers (empty: diffusers' default)."""
        base = self.base(source, identity)
        from . import families

        self._check_channels(channels, used_by, source, base, families.of_pipeline(base), task)
        models = [self.controlnet(*pair, class_name=controlnet_class or "ControlNetModel") for pair in controlnets]

        def derive():
            extra = {}
            if controlnets:
                for (cn_source, _id), model in zip(controlnets, models):
                    self._check_controlnet_pairing(source, base, cn_source, model)
                extra["controlnet"] = models[0] if len(models) == 1 else models
            if pag_layers is not None:
                extra["enable_pag"] = True
                if pag_layers:
                    extra["pag_applied_layers"] = list(pag_layers)
            if autopipeline is None:
                pipe = base
            else:
                import diffusers

                try:
                    pipe = getattr(diffusers, autopipeline).from_pipe(base, **extra)
                except ValueError as exc:
                    if pag_layers is None:
                        raise
                    raise ModelUnavailable(f"diffusers has no Perturbed-Attention Guidance pipeline for "
                                           f"{type(base).__name__} {used_by.split(' ', 1)[-1]}"
                                           + (" with a ControlNet" if controlnets else "") + f" ({exc})",
                                           "remove pag_scale" + (", or the ControlNet" if controlnets else "")) from None
            pipe.set_progress_bar_config(disable=True)
            return pipe

        cn_identities = tuple(cn_identity for _s, cn_identity in controlnets)
        return self.cached(("pipeline", identity, autopipeline, cn_identities, pag_layers), derive,
                           group=(identity, *cn_identities))

    def adapter_pipeline(self, class_name: str, source: ModelSource, identity: str, adapters: list):
        """The family's T2I-Adapter pipeline (`class_name`) derived from this checkpoint with these adapters
        (`from_pipe`, sharing the base's modules; several wrapped in a MultiAdapter, as diffusers' docs do)."""
        import diffusers

        base = self.base(source, identity)
        models = [self.cached(("t2i-adapter", adapter_identity), lambda adapter_source=adapter_source: self._adapter(adapter_source),
                              load_label=adapter_identity, group=adapter_identity,
                              estimate=self.estimate(adapter_source), source=adapter_source)
                  for adapter_source, adapter_identity in adapters]

        def derive():
            adapter = models[0] if len(models) == 1 else diffusers.MultiAdapter(models)
            pipe = getattr(diffusers, class_name).from_pipe(base, adapter=adapter)
            pipe.set_progress_bar_config(disable=True)
            return pipe

        identities = tuple(adapter_identity for _s, adapter_identity in adapters)
        return self.cached(("adapter-pipeline", identity, class_name, identities), derive, group=(identity, *identities))

    def _adapter(self, source: ModelSource):
        from diffusers import T2IAdapter

        location, kwargs = self.pretrained_args(source)
        with missing_safetensors_explained(source):
            return T2IAdapter.from_pretrained(location, **kwargs).to(self.device)

    def _check_controlnet_pairing(self, source: ModelSource, base, cn_source: ModelSource, controlnet) -> None:
        """A ControlNet made for another family, or for another version of the checkpoint's (an SD 1.x ControlNet on
        an SD 2.x checkpoint: another cross-attention width), fails here rather than deep inside torch."""
        from . import families
        from .families.checks import controlnet_problem

        family = families.of_pipeline(base)
        config = {**controlnet.config, "_class_name": type(controlnet).__name__}
        problem = controlnet_problem(family, source.label, cn_source.label, config)
        if problem is not None:
            raise ModelUnavailable(*problem)
        unet = getattr(base, "unet", None)
        if unet is not None and unet.config.cross_attention_dim != controlnet.config.cross_attention_dim:
            raise ModelUnavailable(
                f"ControlNet '{cn_source.label}' conditions on text {controlnet.config.cross_attention_dim} wide, but "
                f"'{source.label}' has a {unet.config.cross_attention_dim}-wide text conditioning: it was made for "
                f"another version of {family.name} (SD 1.x and 2.x differ so)",
                "use a ControlNet trained for this very checkpoint's version")

    @staticmethod
    def _check_channels(allowed: tuple[int, ...], used_by: str, source: ModelSource, pipe, family=None, task: str = "") -> None:
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        channels = getattr(getattr(denoiser, "config", None), "in_channels", None)
        if channels is None or not allowed or channels in allowed:
            return
        from .families.checks import channel_problem

        problem = channel_problem(family, task, channels, source.label, used_by) if family is not None else None
        raise ModelUnavailable(*(problem or (f"model '{source.label}' has a {channels}-channel denoiser, which {used_by} "
                                             f"cannot use", "use a checkpoint made for this task")))

    def depth_estimator(self, source: ModelSource, identity: str):
        """A transformers depth-estimation pipeline (DPT, Depth Anything), loaded once."""

        def load():
            from transformers import pipeline

            location, kwargs = self.pretrained_args(source)
            if kwargs.get("local_files_only"):
                # a hub model in the local cache: its snapshot is an ordinary folder. (By the hub id, pipeline() hands
                # local_files_only to AutoConfig twice, a TypeError, and asks the hub for an adapter config first.)
                location = str(self.model_folder(source))
                kwargs = {k: v for k, v in kwargs.items() if k not in ("revision", "cache_dir", "local_files_only")}
            hub = {k: kwargs[k] for k in ("revision", "trust_remote_code") if k in kwargs}
            model_kwargs = {k: kwargs[k] for k in ("cache_dir", "use_safetensors") if k in kwargs}
            with missing_safetensors_explained(source):
                return pipeline("depth-estimation", model=location, device=self.device, dtype=self.dtype,
                                model_kwargs=model_kwargs, **hub)

        return self.cached(("depth-estimator", identity), load, load_label=identity, group=identity,
                           estimate=self.estimate(source), source=source)

    # ------------------------------------------------------------ schedulers
    def fresh_scheduler(self, identity: str, name: str | None, names: dict | None = None):
        """A new scheduler for one call: the checkpoint's own (default) or one by short name (`names`: the family's
        table, None: runner's usual one), from its config."""
        from .schedulers import make_scheduler

        base = self.pool.objects[self._pool_key(("base", identity))][0]
        own = getattr(base, OWN_SCHEDULER, None) or base.scheduler
        return make_scheduler(name, own.config, type(own), names)
