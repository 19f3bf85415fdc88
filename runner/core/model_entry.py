"""A named model as a workflow writes it: the language validates it, the models layer loads it."""


from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from .empty import empty_dict


class ModelEntry(BaseModel):
    """A named model. A plain string in `models:` is shorthand for {source: ...}."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str = Field(..., min_length=1, description="hub id, local diffusers folder, single-file .safetensors, or tiny:NAME")
    revision: str | None = Field(None, description="hub branch, tag or commit; runs record the resolved commit")
    variant: str | None = Field(None, description="weight variant, e.g. fp16")
    subfolder: str | None = Field(None, description="folder inside the repository")
    weight_name: str | None = Field(None, min_length=1, max_length=255, pattern=r"^[^/\\]+$",
                                    description="the weights file inside the folder or repository, where it holds "
                                                "several (an IP-Adapter: h94/IP-Adapter, subfolder models, weight_name "
                                                "ip-adapter_sd15.safetensors); default: the one .safetensors file")
    vae: str | None = Field(None, min_length=1, description="a VAE to load instead of the checkpoint's own: a folder "
                            "(a VAE's, or a pipeline's vae/), a single .safetensors file, a hub id or tiny:NAME; part "
                            "of the model's identity")
    text_encoder: str | None = Field(None, min_length=1, description="the first text encoder to load instead of (or, "
                                     "for a checkpoint file that holds none, as) the checkpoint's own: a .safetensors "
                                     "file in the transformers layout (ComfyUI's text_encoders/ or clip/, e.g. "
                                     "clip_l.safetensors), a transformers model folder, a pipeline folder (its "
                                     "text_encoder/), a hub id or tiny:NAME; part of the model's identity")
    text_encoder_2: str | None = Field(None, min_length=1, description="the second text encoder, as text_encoder: "
                                       "(FLUX.1: T5-XXL, e.g. t5xxl_fp16.safetensors; SDXL and SD3: CLIP-G)")
    text_encoder_3: str | None = Field(None, min_length=1, description="the third text encoder, as text_encoder: "
                                       "(SD3 / SD3.5: T5-XXL)")
    embeddings: dict[Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\S+$")],
                     Annotated[str, Field(min_length=1)]] = Field(
        default_factory=empty_dict, description="textual-inversion embeddings to load into the checkpoint's text encoders: "
        "{TOKEN: SOURCE}, the token as prompts write it (e.g. '<cat-toy>', 'embedding:EasyNegative' as ComfyUI "
        "writes it) and a .safetensors file (A1111's emb_params, diffusers' single token, SDXL's clip_l + clip_g), a "
        "hub id or tiny:NAME; bare names are found in the model folders' embeddings/; part of the model's identity")
    allow_pickle: bool = Field(False, description="ask to load pickle (.bin/.ckpt) weights, which can run code when "
                               "loaded; the person running the workflow must allow it too (--allow-pickle NAME)")
    config: str | None = Field(None, description="for a single-file checkpoint: its diffusers config (a local diffusers "
                               "folder, hub id or tiny:NAME); default: the one runner ships for the architecture its "
                               "weights show (SD 1.x, 2.x, SDXL base, refiner, inpainting), or for SD3 / SD3.5 and "
                               "FLUX.1 the config files of diffusers' own repository for it (from the hub cache)")
    trust_remote_code: bool = Field(False, description="ask to run code from the model repository; the person running "
                                    "the workflow must allow it too (--trust-remote-code NAME)")


# The parts of a checkpoint a model entry may name files for (each a source of its own, part of the identity), and
# the kind of model each is (runner.models.model_kinds)
PARTS = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3")
PART_KINDS = {"vae": "vae", "text_encoder": "text_encoder", "text_encoder_2": "text_encoder",
              "text_encoder_3": "text_encoder"}


# The model-entry options that turn on code execution. A workflow may ask for them; only the person running it can
# allow them (a workflow is a file people share: it must not be able to run code by saying so itself).
# option -> (command-line flag, what it lets happen)
OPT_INS = {
    "allow_pickle": ("--allow-pickle", "loads pickle (.bin/.ckpt/.pt) weights, which can run code when loaded"),
    "trust_remote_code": ("--trust-remote-code", "runs Python code shipped with the model"),
}


@dataclass(frozen=True)
class Consent:
    """The models whose entries the person running a workflow allows to use each opt-in (by `models:` name).

    `given_by` says where the permission came from, for the manifest ("command line", "Session"); `refused` is why
    nothing may be allowed at all (a workflow embedded in an image), or "" ."""

    allow_pickle: frozenset[str] = frozenset()
    trust_remote_code: frozenset[str] = frozenset()
    given_by: str = "command line"
    refused: str = ""

    def allows(self, option: str, name: str) -> bool:
        return not self.refused and name in getattr(self, option)

    @classmethod
    def of(cls, allow_pickle=(), trust_remote_code=(), given_by: str = "command line") -> "Consent":
        return cls(frozenset(allow_pickle or ()), frozenset(trust_remote_code or ()), given_by)


NO_CONSENT = Consent()
