"""Loaded models, shared across nodes: each checkpoint loads once per run.

A checkpoint is loaded once as a base pipeline; the txt2img / img2img /
inpaint variants are derived from it with diffusers' AutoPipeline `from_pipe`,
which reuses the same module objects (no second copy of the weights).
Pipelines are keyed by model identity + task (+ the ControlNet stack later);
dtype and device are fixed per run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from .sources import FileHashCache, ModelSource, ModelUnavailable, local_folder, prepare_hub

TASK_AUTOPIPELINES = {
    "txt2img": "AutoPipelineForText2Image",
    "img2img": "AutoPipelineForImage2Image",
    "inpaint": "AutoPipelineForInpainting",
    "refine": "AutoPipelineForImage2Image",
}
UNET_CHANNELS = {4: "a standard", 9: "an inpainting", 5: "a depth-to-image"}
TASK_CHANNELS = {"txt2img": (4,), "img2img": (4,), "inpaint": (4, 9), "depth2img": (5,), "refine": (4,)}


def quiet_libraries() -> None:
    """Silence progress bars and advisory warnings of the libraries; errors still surface as exceptions."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import diffusers
    import huggingface_hub
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


class ModelRegistry:
    def __init__(self, device: str, dtype: str, models_dir: Path, hash_cache: FileHashCache | None = None,
                 deterministic: bool = False):
        quiet_libraries()
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it before CUDA starts
        import torch

        self.torch = torch
        if deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        self.device = self._usable_device(device)
        self.dtype = getattr(torch, dtype)
        self.models_dir = models_dir
        self._objects: dict[tuple, Any] = {}
        self.hash_cache = hash_cache
        self._components_by_digest: dict[str, Any] = {}
        self.shared_components: dict[str, list[str]] = {}  # identity -> components reused from another checkpoint
        self.loads: list[str] = []  # identities loaded from disk, in order (for manifests and tests)

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
    def cached(self, key: tuple, factory: Callable[[], Any], *, load_label: str | None = None) -> Any:
        """The object stored under `key`, made by `factory()` the first time (a model load when `load_label` is given)."""
        if key not in self._objects:
            self._objects[key] = factory()
            if load_label is not None:
                self.loads.append(load_label)
        return self._objects[key]

    def model_folder(self, source: ModelSource) -> Path | None:
        """The model's files on disk (tiny: built on demand; hub: the cached snapshot), or None if not local."""
        if source.kind == "tiny":
            from .tiny import ensure_tiny

            return ensure_tiny(source.location, self.models_dir / "tiny")
        return local_folder(source, self.models_dir)

    def pretrained_args(self, source: ModelSource) -> tuple[str, dict]:
        """(what to pass to from_pretrained, its keyword arguments) for this source, dtype and safety settings."""
        entry = source.entry
        kwargs: dict[str, Any] = {"dtype": self.dtype, "use_safetensors": not entry.allow_pickle}
        if entry.variant:
            kwargs["variant"] = entry.variant
        if entry.subfolder:
            kwargs["subfolder"] = entry.subfolder
        if entry.trust_remote_code:
            kwargs["trust_remote_code"] = True
        if source.kind == "tiny":
            from .tiny import ensure_tiny

            return str(ensure_tiny(source.location, self.models_dir / "tiny")), kwargs
        if source.kind == "hub":
            kwargs.update(prepare_hub(source))
        return source.location, kwargs

    def base(self, source: ModelSource, identity: str):
        """The checkpoint's own pipeline, loaded once. Components byte-identical to ones already loaded
        (an SDXL refiner's VAE and second text encoder) are passed in instead of loaded again."""
        def load():
            from diffusers import DiffusionPipeline

            location, kwargs = self.pretrained_args(source)
            if source.kind == "file":
                pipe = self._from_single_file(location, kwargs)
            else:
                folder = self.model_folder(source)
                shared = self._identical_components(folder)
                pipe = DiffusionPipeline.from_pretrained(location, **kwargs, **shared)
                self.shared_components[identity] = sorted(shared)
                self._remember_components(folder, pipe)
            pipe.to(self.device)
            pipe.set_progress_bar_config(disable=True)
            return pipe

        return self.cached(("base", identity), load, load_label=identity)

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
        return {name: self._components_by_digest[digest] for name, digest in self._component_digests(folder).items()
                if digest in self._components_by_digest}

    def _remember_components(self, folder: Path | None, pipe) -> None:
        for name, digest in self._component_digests(folder).items():
            module = getattr(pipe, name, None)
            if module is not None:
                self._components_by_digest.setdefault(digest, module)

    def _from_single_file(self, location: str, kwargs: dict):
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
        from diffusers.loaders.single_file_utils import infer_diffusers_model_type, load_single_file_checkpoint

        checkpoint = load_single_file_checkpoint(location)
        model_type = infer_diffusers_model_type(checkpoint)
        cls = StableDiffusionXLPipeline if model_type.startswith("xl") else StableDiffusionPipeline
        kwargs = {k: v for k, v in kwargs.items() if k in ("dtype",)}
        return cls.from_single_file(location, **kwargs)

    def controlnet(self, source: ModelSource, identity: str):
        """A ControlNet model, loaded once and shared by every node and pipeline that uses it."""

        def load():
            from diffusers import ControlNetModel

            location, kwargs = self.pretrained_args(source)
            return ControlNetModel.from_pretrained(location, **kwargs).to(self.device)

        return self.cached(("controlnet", identity), load, load_label=identity)

    def pipeline(self, task: str, source: ModelSource, identity: str, controlnets: list = ()):
        """A pipeline for `task` on this checkpoint (with these ControlNets), sharing the base's modules."""

        def derive():
            base = self.base(source, identity)
            self._check_channels(task, source, base)
            extra = {}
            if controlnets:
                if task in ("depth2img", "refine"):
                    raise ModelUnavailable(f"a {task} node cannot take ControlNets; use txt2img, img2img or inpaint")
                models = [self.controlnet(*pair) for pair in controlnets]
                for (cn_source, _id), model in zip(controlnets, models):
                    self._check_controlnet_pairing(source, base, cn_source, model)
                extra["controlnet"] = models[0] if len(models) == 1 else models
            if task == "depth2img":
                pipe = base  # AutoPipeline has no depth-to-image task: the checkpoint's own class is the one
            else:
                import diffusers

                pipe = getattr(diffusers, TASK_AUTOPIPELINES[task]).from_pipe(base, **extra)
            pipe.set_progress_bar_config(disable=True)
            return pipe

        return self.cached(("pipeline", identity, task, tuple(cn_identity for _s, cn_identity in controlnets)), derive)

    @staticmethod
    def _check_controlnet_pairing(source: ModelSource, base, cn_source: ModelSource, controlnet) -> None:
        unet = getattr(base, "unet", None)
        if unet is None:
            return
        wanted = (unet.config.cross_attention_dim, unet.config.get("addition_embed_type"))
        has = (controlnet.config.cross_attention_dim, controlnet.config.get("addition_embed_type"))
        if wanted != has:
            family = {None: "SD 1.x/2.x", "text_time": "SDXL"}
            raise ModelUnavailable(
                f"ControlNet '{cn_source.label}' was made for {family.get(has[1], has[1])} models "
                f"(cross-attention {has[0]}), but '{source.label}' is {family.get(wanted[1], wanted[1])} "
                f"(cross-attention {wanted[0]}): use a ControlNet trained for '{source.label}' "
                "(e.g. a *-sdxl-* ControlNet for SDXL checkpoints)"
            )

    @staticmethod
    def _check_channels(task: str, source: ModelSource, pipe) -> None:
        unet = getattr(pipe, "unet", None)
        channels = getattr(getattr(unet, "config", None), "in_channels", None)
        allowed = TASK_CHANNELS.get(task)
        if channels is None or allowed is None or channels in allowed:
            return
        what = UNET_CHANNELS.get(channels, f"a {channels}-channel")
        fix = {9: "use it in an inpaint node, or use the base (non-inpainting) checkpoint here",
               5: "use it in a depth2img node",
               4: "use a depth-to-image checkpoint such as stabilityai/stable-diffusion-2-depth (tiny:sd2-depth offline)"
               }.get(channels, "use a checkpoint made for this task")
        raise ModelUnavailable(
            f"model '{source.label}' is {what} checkpoint (its UNet takes {channels} input channels), "
            f"which a {task} node cannot use: {fix}"
        )

    def depth_estimator(self, source: ModelSource, identity: str):
        """A transformers depth-estimation pipeline (DPT, Depth Anything), loaded once."""

        def load():
            from transformers import pipeline

            location, kwargs = self.pretrained_args(source)
            hub = {k: kwargs[k] for k in ("revision", "trust_remote_code") if k in kwargs}
            model_kwargs = {k: kwargs[k] for k in ("cache_dir", "local_files_only") if k in kwargs}
            return pipeline("depth-estimation", model=location, device=self.device, dtype=self.dtype,
                            model_kwargs=model_kwargs, **hub)

        return self.cached(("depth-estimator", identity), load, load_label=identity)

    # ------------------------------------------------------------ schedulers
    def fresh_scheduler(self, identity: str, name: str | None):
        """A new scheduler for one call: the checkpoint's own (default) or one by short name, from its config."""
        from .schedulers import make_scheduler

        own = self._objects[("base", identity)].scheduler
        return make_scheduler(name, own.config, type(own))
