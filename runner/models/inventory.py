"""What the model folders' files were made for, read from the files alone (no torch): `runner models list`'s family
column."""

from __future__ import annotations

from pathlib import Path

# model kinds (runner.models.model_kinds) read as checkpoints; None: a prior + decoder folder, a transformer file alone
CHECKPOINT_KINDS = ("pipeline", None)


def family_of(path: Path):
    """The family a model file or folder was made for, from its files (for listings): a checkpoint's, a ControlNet's
    or a LoRA's; None when they do not say."""
    from ..core.model_entry import ModelEntry
    from .configs import component_config, lora_facts
    from .families import FAMILIES, from_files
    from .model_kinds import local_kind
    from .sources import ModelSource

    path = Path(path)
    kind = local_kind(path)
    source = ModelSource(ModelEntry(source=str(path)), "folder" if path.is_dir() else "file", str(path))
    if kind in CHECKPOINT_KINDS:
        return from_files(source)
    if kind == "controlnet":
        config = component_config(source) or {}
        return next((family for family in FAMILIES if family.controlnet_fits and family.controlnet_fits(config)), None)
    if kind == "lora":
        facts = lora_facts(source) or {}
        return next((family for family in FAMILIES if facts.get("denoiser") and family.lora_fits
                     and family.lora_fits(facts, {}) and family.reads_lora_width(facts.get("cross_attention_dim"))),
                    None)
    return None
