"""Where the pinned libraries disagree with each other, the smallest bridge that lets diffusers run its own code.

transformers 5 builds CLIPTextModel flat (embeddings, encoder and final_layer_norm are its own children), while
diffusers 0.42's Stable Diffusion pipelines reach the final layer norm through `text_encoder.text_model` when a node
asks for `clip_skip` (FACTS.md: "'CLIPTextModel' object has no attribute 'text_model'"). A flat text encoder gets a
plain attribute `text_model` naming itself (not a registered submodule: its weights, state dict and device moves are
unchanged), so diffusers' own clip_skip code runs as it does with transformers 4.
"""

from __future__ import annotations

TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


def bridge(pipe) -> None:
    """Apply the bridges above to a loaded pipeline's components."""
    for name in TEXT_ENCODERS:
        encoder = getattr(pipe, name, None)
        if (encoder is not None and hasattr(encoder, "final_layer_norm") and "text_model" not in vars(encoder)
                and "text_model" not in getattr(encoder, "_modules", {})):
            object.__setattr__(encoder, "text_model", encoder)
