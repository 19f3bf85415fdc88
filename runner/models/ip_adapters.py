"""IP-Adapters on a generation node (`ip_adapter: [{model, image, scale, mask, image_encoder}]`), through diffusers'
own IP-Adapter loader: for the node's call the adapters' weights go into the (shared) UNet with
`load_ip_adapter`, their scales with `set_ip_adapter_scale`, their images as `ip_adapter_image` (masks through
`IPAdapterMaskProcessor` as `cross_attention_kwargs["ip_adapter_masks"]`), and `unload_ip_adapter` takes them out
again afterwards, so other nodes on the same checkpoint run without them. The weights file is read once per
Session (a state dict in the pool), and so is the image encoder (a CLIPVisionModelWithProjection, registered on
the pipeline for the call, as diffusers' docs pass one to from_pretrained)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from .errors import ModelUnavailable, NodeInputError
from .sources import ModelSource

ENCODER_FOLDER = "image_encoder"  # diffusers' default image_encoder_folder, beside the weights


def encoder_folder(registry, source: ModelSource) -> Path:
    """The image encoder's folder: an encoder folder itself, else the image_encoder/ beside an IP-Adapter's file."""
    folder = registry.files_folder(source, ["**"])
    for candidate in (folder, folder / ENCODER_FOLDER):
        if (candidate / "config.json").is_file():
            return candidate
    raise ModelUnavailable(f"'{source.label}' holds no image encoder (no config.json in {folder} or its "
                           f"{ENCODER_FOLDER}/)", "give the ip_adapter item an image_encoder: (a CLIP vision model "
                           "folder, e.g. h94/IP-Adapter with subfolder models/image_encoder; ComfyUI's clip_vision/)")


class applied_ip_adapters:
    """Load the node's IP-Adapters into the pipeline for one call, set their scales, add their images (and masks)
    to the call's arguments; take them out afterwards."""

    def __init__(self, ctx, pipe, items, kwargs: dict[str, Any], checkpoint: str = ""):
        self.ctx, self.pipe, self.items, self.kwargs, self.checkpoint = ctx, pipe, list(items), kwargs, checkpoint
        self.before: dict[str, Any] = {}

    def __enter__(self):
        if not self.items:
            return self
        pipe, ctx, registry = self.pipe, self.ctx, self.ctx.models
        if not hasattr(pipe, "load_ip_adapter"):
            raise NodeInputError(f"ip_adapter: {type(pipe).__name__} takes no IP-Adapter in diffusers",
                                 "remove ip_adapter from this node")
        state_dicts, encoders, records = [], {}, []  # encoders: identity -> source
        for index, item in enumerate(self.items):
            source, identity = ctx.source(item.model)
            path = registry.weights_file(source, "IP-Adapter")
            state_dicts.append(registry.cached(("ip-adapter", identity), lambda path=path: _state_dict(path, source),
                                               load_label=identity, group=identity, estimate=registry.estimate(source),
                                               source=source))
            encoder_source, encoder_identity = ctx.source(item.image_encoder) if item.image_encoder else (source, identity)
            encoders[encoder_identity] = encoder_source
            records.append({"model": identity, "image_encoder": encoder_identity, "weights": path.name,
                            "scale": item.scale, "images": len(item.image) if isinstance(item.image, list) else 1,
                            "mask": item.mask is not None})
        if len(encoders) > 1:
            raise NodeInputError("ip_adapter: the adapters use different image encoders (" + ", ".join(
                sorted(found.label for found in encoders.values())) + "); a pipeline has one",
                                 "give them the same image_encoder:")
        (encoder_identity, encoder_source), = encoders.items()
        encoder = registry.cached(("image-encoder", encoder_identity),
                                  lambda: _encoder(registry, encoder_source), load_label=encoder_identity,
                                  group=encoder_identity, estimate=registry.estimate(encoder_source),
                                  source=encoder_source)
        for name in ("image_encoder", "feature_extractor"):
            self.before[name] = getattr(pipe, name, None)
        pipe.register_modules(image_encoder=encoder)

        # the state dicts as diffusers splits a file (image_proj, ip_adapter); its encoder is the one registered
        # (the UNet pipelines' loader names it image_encoder_folder, FLUX's image_encoder_pretrained_model_name_or_path)
        takes = inspect.signature(pipe.load_ip_adapter).parameters
        no_encoder = {name: None for name in ("image_encoder_folder", "image_encoder_pretrained_model_name_or_path")
                      if name in takes}
        try:
            pipe.load_ip_adapter(state_dicts, subfolder=[""] * len(state_dicts), weight_name=[""] * len(state_dicts),
                                 **no_encoder)
        except (RuntimeError, KeyError, ValueError) as exc:
            self._restore()
            raise ModelUnavailable(f"ip_adapter: the IP-Adapter does not fit '{self.checkpoint}' "
                                   f"({(str(exc).splitlines() or [''])[0][:200]})",
                                   "use an IP-Adapter made for this checkpoint's family (SD 1.5: ip-adapter_sd15, "
                                   "SDXL: ip-adapter_sdxl)") from None
        self.loaded = True
        scales = [item.scale if item.scale is not None else 1.0 for item in self.items]
        pipe.set_ip_adapter_scale(scales if len(scales) > 1 else scales[0])
        images = [[ctx.load(link).convert("RGB") for link in item.image] if isinstance(item.image, list)
                  else ctx.load(item.image).convert("RGB") for item in self.items]
        images = images if len(images) > 1 else images[0]
        guidance = _classifier_free(pipe, self.kwargs)
        if guidance is None:  # a pipeline that prepares them its own way (PAG): the images, as given
            self.kwargs["ip_adapter_image"] = images
        else:
            # the image embeddings, computed once per Session for the same adapters, encoder and images (by the
            # images' cache keys): identical to passing the images (diffusers prepares them so itself)
            count = self.kwargs.get("num_images_per_prompt", 1)
            images_key = tuple(tuple(_link_key(ctx, link) for link in item.image) if isinstance(item.image, list)
                               else _link_key(ctx, item.image) for item in self.items)
            identities = tuple(record["model"] for record in records)

            def prepare():
                import torch

                with torch.no_grad():
                    return pipe.prepare_ip_adapter_image_embeds(images, None, registry.device, count, guidance)

            self.kwargs["ip_adapter_image_embeds"] = registry.cached(
                ("ip-adapter-embeds", identities, encoder_identity, images_key, guidance, count), prepare,
                group=(*identities, encoder_identity))
        if any(item.mask is not None for item in self.items):
            self.kwargs.setdefault("cross_attention_kwargs", {})
            self.kwargs["cross_attention_kwargs"] = {**self.kwargs["cross_attention_kwargs"],
                                                     "ip_adapter_masks": self._masks()}
        ctx.record(ip_adapters=records)
        return self

    def _masks(self) -> list:
        """One mask tensor per adapter, [1, images, H, W], as diffusers' docs build them (a mask repeated for each
        image of its adapter; an adapter without one applies everywhere)."""
        from diffusers.image_processor import IPAdapterMaskProcessor
        from PIL import Image

        width, height = self.kwargs.get("width"), self.kwargs.get("height")
        if width is None or height is None:
            start = self.kwargs.get("image")
            if isinstance(start, Image.Image):
                width, height = start.size
            else:
                unet = self.pipe.unet.config
                width = height = unet.sample_size * self.pipe.vae_scale_factor
        processor = IPAdapterMaskProcessor()
        masks = []
        for item in self.items:
            count = len(item.image) if isinstance(item.image, list) else 1
            mask = self.ctx.load(item.mask).convert("L") if item.mask is not None else Image.new("L", (width, height), 255)
            tensor = processor.preprocess([mask] * count, height=height, width=width)
            masks.append(tensor.reshape(1, tensor.shape[0], tensor.shape[2], tensor.shape[3]))
        return masks

    def _restore(self) -> None:
        for name, value in self.before.items():
            if hasattr(self.pipe, name):
                self.pipe.register_modules(**{name: value})

    def __exit__(self, *exc):
        if self.items and getattr(self, "loaded", False):
            self.pipe.unload_ip_adapter()
        if self.items:
            self._restore()
        return False


def _link_key(ctx, link) -> tuple[str, str]:
    return ctx.task.upstream[link.node], link.output or ""


def _classifier_free(pipe, kwargs: dict[str, Any]) -> bool | None:
    """Whether the call will guide without the prompt (the image embeddings then carry a negative half), as the
    pipeline decides it: guidance_scale above 1 and a UNet without a guidance embedding; None for a pipeline whose
    prepare_ip_adapter_image_embeds takes more (PAG's)."""

    prepare = getattr(pipe, "prepare_ip_adapter_image_embeds", None)
    if prepare is None or list(inspect.signature(prepare).parameters) != [
            "ip_adapter_image", "ip_adapter_image_embeds", "device", "num_images_per_prompt",
            "do_classifier_free_guidance"]:
        return None
    guidance = kwargs.get("guidance_scale", inspect.signature(pipe.__call__).parameters["guidance_scale"].default)
    return guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None


def _state_dict(path: Path, source: ModelSource) -> dict:
    """The file split as diffusers' load_ip_adapter splits a .safetensors file: {image_proj: ..., ip_adapter: ...}."""
    if path.suffix.lower() != ".safetensors":
        raise ModelUnavailable(f"IP-Adapter '{source.label}' is not a .safetensors file ({path.name}); runner reads "
                               "IP-Adapters as safetensors only", "use its .safetensors version")
    from safetensors import safe_open

    state_dict: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        for key in handle.keys():
            # h94's names, and XLabs' FLUX ones renamed as diffusers' FluxIPAdapterMixin renames them
            if key.startswith(("image_proj.", "ip_adapter_proj_model.")):
                state_dict["image_proj"][key.split(".", 1)[1]] = handle.get_tensor(key)
            elif key.startswith(("ip_adapter.", "double_blocks.")):
                name = key.split(".", 1)[1].replace("ip_adapter_double_stream_k_proj", "to_k_ip").replace(
                    "ip_adapter_double_stream_v_proj", "to_v_ip").replace("processor.", "")
                state_dict["ip_adapter"][name] = handle.get_tensor(key)
    if not state_dict["image_proj"] or not state_dict["ip_adapter"]:
        raise ModelUnavailable(f"'{source.label}' ({path.name}) is not an IP-Adapter: it has no image_proj and "
                               "ip_adapter weights", "use an IP-Adapter in the original layout (h94/IP-Adapter's)")
    return state_dict


def _encoder(registry, source: ModelSource):
    from transformers import CLIPVisionModelWithProjection

    folder = encoder_folder(registry, source)
    return CLIPVisionModelWithProjection.from_pretrained(str(folder), dtype=registry.dtype,
                                                         use_safetensors=True).to(registry.device)
