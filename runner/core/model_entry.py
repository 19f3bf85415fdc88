"""A named model as a workflow writes it: the language validates it, the models layer loads it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelEntry(BaseModel):
    """A named model. A plain string in `models:` is shorthand for {source: ...}."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str = Field(..., min_length=1, description="hub id, local diffusers folder, single-file .safetensors, or tiny:NAME")
    revision: str | None = Field(None, description="hub branch, tag or commit; runs record the resolved commit")
    variant: str | None = Field(None, description="weight variant, e.g. fp16")
    subfolder: str | None = Field(None, description="folder inside the repository")
    vae: str | None = Field(None, min_length=1, description="a VAE to load instead of the checkpoint's own: a folder "
                            "(a VAE's, or a pipeline's vae/), a single .safetensors file, a hub id or tiny:NAME; part "
                            "of the model's identity")
    allow_pickle: bool = Field(False, description="allow pickle (.bin/.ckpt) weights; they can run code when loaded")
    config: str | None = Field(None, description="for a single-file checkpoint: its diffusers config (a local diffusers "
                               "folder, hub id or tiny:NAME); default: the one runner ships for the architecture its "
                               "weights show (SD 1.x, 2.x, SDXL base, refiner, inpainting)")
    trust_remote_code: bool = Field(False, description="allow code from the model repository to run")
