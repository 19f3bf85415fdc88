"""Single-file checkpoints: one .safetensors in the original (LDM / A1111) layout, loaded without the model hub.

diffusers' `from_single_file` infers the architecture from the weights' keys (`infer_diffusers_model_type`), then
needs that architecture's diffusers config: model_index.json, each component's config, the scheduler's, the
tokenizer files. It fetches them from the hub repository it names for the architecture unless `config=` is a
local folder. runner ships them for the Stable Diffusion families (single_file_configs/<architecture>/, the values
of those hub repositories' files) and hands diffusers a folder holding them, so such a checkpoint loads offline.
A model entry's `config:` (a local diffusers folder, a hub id or tiny:NAME) is used instead when it is given.

The CLIP tokenizer files (vocab.json 49408 tokens, merges.txt) are not shipped four times over: they are derived
from the CLIP BPE merges shipped once (single_file_configs/clip_bpe, MIT, see its LICENSE) into the folder
handed to diffusers, built once under the runner's models folder (the package folder may be read-only).

Reading a file's keys (the layout check) needs no torch; only `load_pipeline` imports diffusers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from functools import lru_cache
from pathlib import Path

from ..core.atomic import staged_folder
from .errors import ModelUnavailable
from .weights_file import safetensors_header

CONFIGS = Path(__file__).with_name("single_file_configs")
CLIP_BPE = CONFIGS / "clip_bpe" / "bpe_simple_vocab_16e6.txt.gz"
CLIP_MERGES = 49152 - 256 - 2  # the merges CLIP uses: vocab 49408 = 2 * 256 byte tokens + merges + 2 specials

# diffusers' architecture names -> (what a model card calls it, the hub repository its config files mirror)
ARCHITECTURES = {
    "v1": ("SD 1.x", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
    "v2": ("SD 2.x (768 px, v-prediction)", "stabilityai/stable-diffusion-2-1"),
    "inpainting": ("SD 1.x inpainting", "stable-diffusion-v1-5/stable-diffusion-inpainting"),
    "inpainting_v2": ("SD 2.x inpainting", "stabilityai/stable-diffusion-2-inpainting"),
    "xl_base": ("SDXL base", "stabilityai/stable-diffusion-xl-base-1.0"),
    "xl_refiner": ("SDXL refiner", "stabilityai/stable-diffusion-xl-refiner-1.0"),
    "xl_inpaint": ("SDXL inpainting", "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"),
}

# What a file's keys can hold, recognised by their names: (test on a key, the words for it)
UNET_PREFIX = "model.diffusion_model."
_LAYOUTS = (
    (lambda k: k.startswith(UNET_PREFIX), "a UNet in the original layout (model.diffusion_model.*)"),
    (lambda k: k.startswith("first_stage_model."), "a VAE in the original layout (first_stage_model.*)"),
    (lambda k: k.startswith("cond_stage_model."), "a text encoder in the original layout (cond_stage_model.*)"),
    (lambda k: k.startswith("conditioner.embedders."), "SDXL text encoders in the original layout (conditioner.embedders.*)"),
    (lambda k: k.startswith(("control_model.", "input_hint_block.")), "a ControlNet in the original layout (control_model.*)"),
    (lambda k: k.startswith(("lora_unet_", "lora_te")) or any(p in k for p in (".lora_down.", ".lora_up.", ".lora_A.", ".lora_B.")),
     "LoRA weights (they go under a generation node's lora:)"),
    (lambda k: k.startswith(("down_blocks.", "mid_block.", "up_blocks.", "encoder.down_blocks.", "decoder.up_blocks.")),
     "one model in the diffusers layout (down_blocks.*, mid_block.*: a UNet, ControlNet or VAE alone)"),
    (lambda k: k.startswith(("text_model.", "encoder.layers.", "embeddings.", "encoder.block.")),
     "a text encoder in the transformers layout (it goes under a model entry's text_encoder:)"),
    (lambda k: k.startswith(("double_blocks.", "single_blocks.")), "a FLUX.1 transformer in Black Forest Labs' layout"),
    (lambda k: k.startswith("joint_blocks."), "an SD3 transformer in Stability's layout"),
    (lambda k: k.startswith(("image_proj.", "ip_adapter.", "ip_adapter_proj_model.")),
     "an IP-Adapter (it goes under a generation node's ip_adapter:)"),
    (lambda k: k in ("emb_params", "clip_l", "clip_g"), "a textual-inversion embedding (it goes under a model entry's "
                                                        "embeddings:)"),
)


class UnknownLayout(ModelUnavailable):
    """A single file whose keys are not those of a checkpoint runner can load; says what was recognised."""


def recognised(keys: list[str]) -> list[str]:
    """The words for each kind of weights the key names show, in a fixed order."""
    return [words for test, words in _LAYOUTS if any(test(key) for key in keys)]


def file_keys(path: Path) -> list[str] | None:
    """The tensor names of a .safetensors file, read from its header (no torch); None when it is not readable."""
    header = safetensors_header(path)
    if not isinstance(header, dict):
        return None
    return [key for key in header if key != "__metadata__"]


def _prefixes(keys: list[str], count: int = 5) -> str:
    seen: dict[str, int] = {}
    for key in keys:
        prefix = key.split(".")[0]
        seen[prefix] = seen.get(prefix, 0) + 1
    shown = ", ".join(f"{prefix}.* ({n})" for prefix, n in list(seen.items())[:count])
    return shown + (f" and {len(seen) - count} more" if len(seen) > count else "")


FULL_CHECKPOINT_FIX = ("use a whole Stable Diffusion checkpoint in the original (LDM/A1111) layout (SD 1.x, 2.x, SDXL "
                       "base, refiner or inpainting: its keys begin with model.diffusion_model., first_stage_model., "
                       "cond_stage_model. or conditioner.embedders.), or the model's diffusers folder")


def check_layout(path: Path, label: str) -> None:
    """UnknownLayout when a .safetensors file holds nothing runner recognises (cheap: its header only). Files of
    other known kinds (a LoRA, a diffusers-layout UNet) pass here: where they are used decides whether they fit."""
    if path.suffix.lower() != ".safetensors":
        return
    keys = file_keys(path)
    if keys is None:
        raise UnknownLayout(f"model '{label}' ({path}) is not a readable safetensors file (its header could not be "
                            "read)", "check the file (a partial download?), or point the model at another one")
    if not recognised(keys):
        raise UnknownLayout(
            f"model '{label}' ({path}) is not in a layout runner recognises: none of its {len(keys)} tensors belong to "
            f"a Stable Diffusion checkpoint, a LoRA or a diffusers model (key prefixes: {_prefixes(keys) or 'none'})",
            FULL_CHECKPOINT_FIX)


def check_checkpoint(path: Path, label: str) -> None:
    """UnknownLayout unless the file holds a UNet in the original layout (what from_single_file converts)."""
    keys = file_keys(path) if path.suffix.lower() == ".safetensors" else None
    if keys is None or any(key.startswith(UNET_PREFIX) for key in keys):
        return  # not safetensors (allowed pickle): diffusers reads it and says what it finds
    found = recognised(keys)
    raise UnknownLayout(
        f"model '{label}' ({path}) is not a whole checkpoint: it holds {' and '.join(found) or 'no weights runner recognises'} "
        f"({len(keys)} tensors), and no UNet in the original layout (model.diffusion_model.*)", FULL_CHECKPOINT_FIX)


# ------------------------------------------------------------------ packaged configs
@lru_cache(maxsize=None)
def packaged_digest() -> str:
    """A digest of every shipped config file: part of a single file's identity, so that a fixed config is a new model."""
    hasher = hashlib.sha256()
    for file in sorted(p for p in CONFIGS.rglob("*") if p.is_file()):
        hasher.update(f"{file.relative_to(CONFIGS).as_posix()}\0".encode())
        hasher.update(hashlib.sha256(file.read_bytes()).digest())
    return hasher.hexdigest()[:16]


@lru_cache(maxsize=1)
def clip_tokenizer_files() -> tuple[str, str]:
    """(vocab.json, merges.txt) of the CLIP tokenizer, as openai/clip-vit-large-patch14 has them, from the BPE merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode  # GPT-2/CLIP's 256 byte characters, in order

    lines = gzip.decompress(CLIP_BPE.read_bytes()).decode("utf-8").split("\n")[1:CLIP_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    characters = list(bytes_to_unicode().values())
    tokens = characters + [c + "</w>" for c in characters] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = json.dumps({token: index for index, token in enumerate(tokens)}, ensure_ascii=False)
    return vocab, "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n"


def packaged_config(architecture: str, models_dir: Path) -> Path:
    """The shipped diffusers config of `architecture` with its tokenizer files, as a folder (made once)."""
    target = models_dir / "single-file-configs" / f"{architecture}-{packaged_digest()}"
    if (target / "model_index.json").is_file():
        return target
    with staged_folder(target) as staging:
        shutil.copytree(CONFIGS / architecture, staging, dirs_exist_ok=True)
        vocab, merges = clip_tokenizer_files()
        for tokenizer in sorted(staging.glob("tokenizer*")):
            (tokenizer / "vocab.json").write_text(vocab, encoding="utf-8")
            (tokenizer / "merges.txt").write_text(merges, encoding="utf-8")
    return target


def architecture_of(location: str, label: str) -> str:
    """diffusers' name for the architecture of the checkpoint at `location`, one runner ships a config for."""
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    # memory-mapped: only the keys and shapes are read here
    return checkpoint_architecture(load_single_file_checkpoint(location), f"'{label}' ({location})")


def checkpoint_architecture(checkpoint: dict, what: str) -> str:
    """diffusers' name for the architecture of an original-layout state dict, one runner ships a config for."""
    from diffusers.loaders.single_file_utils import (
        CHECKPOINT_KEY_NAMES,
        DIFFUSERS_DEFAULT_PIPELINE_PATHS,
        infer_diffusers_model_type,
    )

    inferred = infer_diffusers_model_type(checkpoint)
    # diffusers answers v1 when it recognises nothing: an SD 1.x UNet has this key
    if inferred == "v1" and CHECKPOINT_KEY_NAMES["v1"] not in checkpoint:
        inferred = None
    if inferred in ARCHITECTURES:
        return inferred
    found = recognised(list(checkpoint))
    known = ", ".join(words for words, _repo in ARCHITECTURES.values())
    if inferred is None:
        found_words = f"diffusers recognises no architecture in it (runner recognises {' and '.join(found) or 'nothing'})"
        fix = "if it is a Stable Diffusion checkpoint of another size, name its diffusers config with config: on the model entry"
    else:
        repo = DIFFUSERS_DEFAULT_PIPELINE_PATHS.get(inferred, {}).get("pretrained_model_name_or_path")
        found_words = f"diffusers recognises it as '{inferred}', for which runner ships no config"
        fix = "name its diffusers config with config: on the model entry" + (f" (e.g. config: {repo})" if repo else "")
    raise UnknownLayout(f"single-file checkpoint {what}: {found_words}; runner ships configs for {known}",
                        f"{fix} (a local diffusers folder or a hub id)")


def pipeline_class(config_dir: Path):
    """The diffusers pipeline class the config folder's model_index.json names."""
    import diffusers

    try:
        name = json.loads((config_dir / "model_index.json").read_text())["_class_name"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelUnavailable(f"the diffusers config {config_dir} has no readable model_index.json ({exc})",
                               "name a diffusers pipeline folder (with model_index.json) as config:") from None
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and hasattr(cls, "from_single_file")):
        raise ModelUnavailable(f"the diffusers config {config_dir} names pipeline class '{name}', which diffusers "
                               "cannot load from a single file", "name the config of a Stable Diffusion checkpoint")
    return cls


def config_folder(location: str, label: str, config_dir: Path | None, models_dir: Path) -> Path:
    """The diffusers config a checkpoint loads with: `config_dir` (its entry's config:), else the one runner ships
    for the architecture its keys show."""
    return config_dir if config_dir is not None else packaged_config(architecture_of(location, label), models_dir)


def load_pipeline(location: str, label: str, config_dir: Path | None, models_dir: Path, dtype, cls=None,
                  parts: dict | None = None):
    """The checkpoint's pipeline, from its one file and a local config folder (the shipped one when None), as the
    class that config names (or `cls`); `parts` (a loaded VAE, text encoders) replace the checkpoint's own."""
    check_checkpoint(Path(location), label)
    architecture = None
    if config_dir is None:
        architecture = architecture_of(location, label)
        config_dir = packaged_config(architecture, models_dir)
    cls = cls or pipeline_class(config_dir)
    extra = dict(parts or {})
    try:
        return cls.from_single_file(location, config=str(config_dir), local_files_only=True, dtype=dtype, **extra)
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        said = " ".join(str(exc).split())[:400]
        as_what = (f"as {ARCHITECTURES[architecture][0]} with the config runner ships" if architecture
                   else f"with the config {config_dir}")
        raise ModelUnavailable(
            f"single-file checkpoint '{label}' ({location}) did not load {as_what}: {type(exc).__name__}: {said}",
            "if its weights are of another size or variant than that config, name the matching diffusers config with "
            "config: on the model entry (a local diffusers folder or a hub id)") from None
